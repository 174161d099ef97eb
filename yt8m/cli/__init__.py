"""The command lines (console scripts yt8m-*; the top-level scripts are shims onto them).

Importing this package makes the process quiet before anything imports TensorFlow
(yt8m/_quiet.py; -v 1 brings TensorFlow's output back).
"""

import sys

from yt8m import _quiet

_quiet.setup(sys.argv)
