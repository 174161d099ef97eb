"""Model registry, keyed by the starter's class names (the --model flag values).

Every model is a keras.Model called as model(features, num_frames=None, training=False) on RAW
dequantized features ([B, D] video-level, [B, T, D] frame-level) and returns a dict with
"predictions" [B, C] probabilities and "representation" [B, H] (plus "logits" where a single
logit exists). Models L2-normalise their own input.
"""

from __future__ import annotations

import dataclasses

import keras

from yt8m.models import layers
from yt8m.models.frame_level import DbofModel, FrameLevelLogisticModel, LstmModel
from yt8m.models.layers import Hparams
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


def hparams_class(name: str) -> type[Hparams]:
  """The frozen dataclass of a model's hyper-parameters: their one list, defaults and checks.

  Raises:
    ValueError: unknown model name.
  """
  return _model_class(name).Hparams


def hparam_names(name: str) -> tuple[str, ...]:
  """The hyper-parameters a model accepts (so a caller can pick its flags from all of them)."""
  return tuple(field.name for field in dataclasses.fields(hparams_class(name)))


def make_hparams(name: str, values: dict | Hparams) -> Hparams:
  """A model's typed hyper-parameters from a dict (missing keys take their defaults).

  Raises:
    ValueError: unknown model, a key the model does not take, or a bad value.
  """
  if isinstance(values, Hparams):
    return values
  return layers.make_hparams(hparams_class(name), name, values)


def build_model(name: str, num_classes: int, hparams: dict | Hparams | None = None,
                **kwargs) -> keras.Model:
  """Constructs a registered model (unbuilt: call it once on a dummy batch to create weights).

  Args:
    name: a key of MODELS.
    num_classes: C.
    hparams: that model's hyper-parameters, typed or as a dict (see hparam_names).
    **kwargs: Keras layer arguments such as name.

  Raises:
    ValueError: unknown model, a hyper-parameter the model does not take, or a bad value.
  """
  return _model_class(name)(num_classes, make_hparams(name, hparams or {}), **kwargs)


def block_frames(model: keras.Model) -> int | None:
  """An H-RNN's frames per block (a learned selection's student's), else None."""
  model = getattr(model, "student", model)
  return getattr(getattr(model, "hparams", None), "hrnn_block_frames", None)


def _model_class(name: str) -> type:
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
  return MODELS[name]
