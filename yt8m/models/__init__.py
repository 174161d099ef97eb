"""Model registry, keyed by the starter's class names (the --model flag values).

Every model is a keras.Model called as model(features, num_frames=None, training=False) on RAW
dequantized features ([B, D] video-level, [B, T, D] frame-level) and returns a dict with
"predictions" [B, C] probabilities and "representation" [B, H] (plus "logits" where a single
logit exists). Models L2-normalise their own input.
"""

from __future__ import annotations

import keras

from yt8m.models.frame_level import DbofModel, FrameLevelLogisticModel, LstmModel
from yt8m.models.teachers import (
  AttentionPoolingModel,
  HierarchicalLstmModel,
  NetVladModel,
  NeXtVladModel,
)
from yt8m.models.video_level import LogisticModel, MoeModel

MODELS = {
    "LogisticModel": LogisticModel,
    "MoeModel": MoeModel,
    "FrameLevelLogisticModel": FrameLevelLogisticModel,
    "DbofModel": DbofModel,
    "LstmModel": LstmModel,
    "HierarchicalLstmModel": HierarchicalLstmModel,
    "NetVladModel": NetVladModel,
    "NeXtVladModel": NeXtVladModel,
    "AttentionPoolingModel": AttentionPoolingModel,
}
VIDEO_LEVEL_MODELS = frozenset({"LogisticModel", "MoeModel"})
FRAME_LEVEL_MODELS = frozenset({"FrameLevelLogisticModel", "DbofModel", "LstmModel",
                                "HierarchicalLstmModel", "NetVladModel", "NeXtVladModel",
                                "AttentionPoolingModel"})


def hparam_names(name: str) -> tuple[str, ...]:
  """The hyper-parameters a model accepts (so a caller can pick its flags from all of them).

  Raises:
    ValueError: unknown model name.
  """
  return _model_class(name).HPARAMS


def build_model(name: str, num_classes: int, **hparams) -> keras.Model:
  """Constructs a registered model (unbuilt: call it once on a dummy batch to create weights).

  Args:
    name: a key of MODELS.
    num_classes: C.
    **hparams: that model's hyper-parameters (see hparam_names), plus an optional Keras name.

  Raises:
    ValueError: unknown model, a hyper-parameter the model does not take, or a bad value.
  """
  cls = _model_class(name)
  unknown = sorted(set(hparams) - set(cls.HPARAMS) - {"name"})
  if unknown:
    raise ValueError(f"{name} does not take hyper-parameter(s) {', '.join(unknown)}; it takes "
                     f"{', '.join(cls.HPARAMS)}")
  return cls(num_classes, **hparams)


def _model_class(name: str) -> type:
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
  return MODELS[name]
