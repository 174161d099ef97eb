"""The train -> eval/inference contract: what a run is, saved as `model_flags.json`.

The starter wrote {model, feature_names, feature_sizes, frame_features, label_loss} and refused
to resume a run whose flags differ. We keep those keys (so starter tooling reading the file
still works) and add what rebuilding the model needs: the model hyper-parameters, the class
count and the frame budget. eval.py and inference.py rebuild the model from this file alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import tensorflow as tf

from yt8m import distill, frame_selection, models, outputs, readers
from yt8m.models import selector

MODEL_FLAGS_FILE = "model_flags.json"


class RunConfigError(ValueError):
  """model_flags.json is missing, unreadable, or contradicts the command line."""


def why_no_jitter(student_frames: int | None, strategy: str, selector_candidates: int) -> str:
  """Why --uniform_jitter cannot apply to this student ("" when it can): it jitters a uniform
  selection, or a learned selection's uniform candidate grid."""
  if not student_frames:
    return "needs --student_frames (a teacher sees every frame)"
  if strategy not in ("uniform", frame_selection.LEARNED):
    return f"jitters --frame_selection=uniform, not {strategy}"
  if strategy == frame_selection.LEARNED and not selector_candidates:
    return ("with --frame_selection=learned needs --selector_candidates (the grid it "
            "jitters)")
  return ""


@dataclasses.dataclass(frozen=True)
class RunConfig:
  model: str
  feature_names: tuple[str, ...]
  feature_sizes: tuple[int, ...]
  frame_features: bool
  label_loss: str = "CrossEntropyLoss"
  num_classes: int = readers.NUM_CLASSES_2018
  max_frames: int = 300
  student_frames: int | None = None
  frame_selection: str = "uniform"
  # Training: a uniform student's frames drawn within their stretches (--uniform_jitter).
  uniform_jitter: bool = False
  # The model's typed hyper-parameters (models.hparams_class(model)); a dict given here (an
  # older model_flags.json, a caller) is converted, missing keys taking their defaults.
  model_hparams: models.Hparams | dict[str, Any] = dataclasses.field(default_factory=dict)
  # --frame_selection=learned: the selector's hyper-parameters (a dict is converted too);
  # None for the other strategies.
  selector_hparams: selector.SelectorHparams | dict[str, Any] | None = None
  # A distilled student's teacher and loss weights; None for ordinary training.
  distillation: "Distillation | None" = None
  # Read 2017 (`video_id`) and 2018+ (`id`) files together (--allow_mixed_datasets).
  allow_mixed_id_keys: bool = False

  def __post_init__(self):
    object.__setattr__(self, "model_hparams",
                       models.make_hparams(self.model, self.model_hparams))
    hparams = self.selector_hparams
    if self.frame_selection != frame_selection.LEARNED:
      hparams = None
    elif not isinstance(hparams, selector.SelectorHparams):
      hparams = models.layers.make_hparams(selector.SelectorHparams, "the learned selector",
                                           hparams or {})
    object.__setattr__(self, "selector_hparams", hparams)
    if hparams:
      scored = selector.scored_features(hparams.selector_features, self.feature_names)
      selector.check_shortlist(hparams, len(scored), len(self.feature_names))
    reason = self.uniform_jitter and why_no_jitter(
        self.student_frames, self.frame_selection, hparams.selector_candidates if hparams else 0)
    if reason:
      raise ValueError(f"--uniform_jitter {reason}")

  @property
  def teacher(self) -> "RunConfig | None":
    return self.distillation.teacher if self.distillation else None

  def reader_config(self, require_labels: bool = True, segment_mode: str | None = None,
                    quantized_frames: bool = False) -> readers.ReaderConfig:
    frames, selection = self.student_frames, self.frame_selection
    candidates = self.selector_hparams.selector_candidates if self.selector_hparams else 0
    if candidates:  # a learned selection among a uniform grid of c * k frames
      frames, selection = min(candidates * self.student_frames, self.max_frames), "uniform"
    return readers.ReaderConfig(
        feature_names=self.feature_names, feature_sizes=self.feature_sizes,
        frame_features=self.frame_features, num_classes=self.num_classes,
        max_frames=self.max_frames, student_frames=frames,
        frame_selection=selection, uniform_jitter=self.uniform_jitter,
        require_labels=require_labels,
        segment_mode=segment_mode, allow_mixed_id_keys=self.allow_mixed_id_keys,
        quantized_frames=quantized_frames and self.frame_features)

  def to_json(self) -> dict:
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    out["distillation"] = self.distillation.to_json() if self.distillation else None
    out["model_hparams"] = dataclasses.asdict(self.model_hparams)
    out["selector_hparams"] = (dataclasses.asdict(self.selector_hparams)
                               if self.selector_hparams else {})
    # The starter wrote comma-separated strings; keep its format for these keys.
    out["feature_names"] = ",".join(self.feature_names)
    out["feature_sizes"] = ",".join(map(str, self.feature_sizes))
    return out

  @classmethod
  def from_json(cls, data: dict) -> "RunConfig":
    names, sizes = readers.parse_feature_flags(str(data["feature_names"]),
                                               str(data["feature_sizes"]))
    known = {f.name for f in dataclasses.fields(cls)}
    fields = {k: v for k, v in data.items() if k in known}
    fields.update(feature_names=names, feature_sizes=sizes)
    if fields.get("distillation"):
      fields["distillation"] = Distillation.from_json(fields["distillation"])
    return cls(**fields)


@dataclasses.dataclass(frozen=True)
class Distillation:
  """How a student learns from its teacher. In model_flags.json as the flat dict earlier
  versions wrote: {"mode", "teacher": <RunConfig json>, the LossWeights fields, "share_head",
  and for serial runs "teacher_dir", "teacher_checkpoint"}.

  mode: "serial" (the trained teacher in teacher_dir, frozen) or "parallel" (trained alongside
  the student on its own label loss).
  share_head: the student classifies with the teacher's output layer (the paper's shared
  output layer), copied from a serial teacher and mirrored after every step from a parallel one.
  """
  mode: str
  teacher: RunConfig
  weights: distill.LossWeights = distill.LossWeights()
  share_head: bool = False
  teacher_dir: str = ""
  teacher_checkpoint: str = ""

  @property
  def parallel(self) -> bool:
    return self.mode == "parallel"

  def to_json(self) -> dict:
    out = {"mode": self.mode, "teacher": self.teacher.to_json(),
           **dataclasses.asdict(self.weights), "share_head": self.share_head}
    if self.mode == "serial":
      out.update(teacher_dir=self.teacher_dir, teacher_checkpoint=self.teacher_checkpoint)
    return out

  @classmethod
  def from_json(cls, data: dict) -> "Distillation":
    weight_names = {f.name for f in dataclasses.fields(distill.LossWeights)}
    return cls(mode=data["mode"], teacher=RunConfig.from_json(data["teacher"]),
               weights=distill.LossWeights(**{k: v for k, v in data.items()
                                              if k in weight_names}),
               share_head=bool(data.get("share_head", False)),
               teacher_dir=data.get("teacher_dir", ""),
               teacher_checkpoint=data.get("teacher_checkpoint", ""))


def path(train_dir: str) -> str:
  return os.path.join(train_dir, MODEL_FLAGS_FILE)


def load(train_dir: str) -> RunConfig:
  file = path(train_dir)
  try:
    found = tf.io.gfile.exists(file)
    if found:
      with tf.io.gfile.GFile(file) as f:
        text = f.read()
  except tf.errors.OpError as e:  # e.g. gs:// without credentials
    raise RunConfigError(f"--train_dir: {outputs.describe_io_error(file, e)}") from None
  if not found:
    raise RunConfigError(f"{file} not found: is --train_dir a directory written by train.py?")
  try:
    return RunConfig.from_json(json.loads(text))
  except (ValueError, KeyError, TypeError) as e:
    raise RunConfigError(f"{file} is unreadable: {e}") from None


def differences(saved: RunConfig, current: RunConfig) -> list[str]:
  a, b = saved.to_json(), current.to_json()
  return [f"{k}: saved {a[k]!r}, now {b[k]!r}" for k in a if a[k] != b[k]]


def save_or_check(train_dir: str, config: RunConfig) -> None:
  """Writes model_flags.json for a new run; for a resumed run, checks that the command line
  builds the same model (as the starter did) and names every difference."""
  file = path(train_dir)
  if tf.io.gfile.exists(file):
    saved = load(train_dir)
    diff = differences(saved, config)
    if diff:
      raise RunConfigError(
          f"{file} was written by a different run ({'; '.join(diff)}); resume with the same "
          "flags, or pass --start_new_model, or use another --train_dir")
    return
  with outputs.atomic_output(file, signature="{") as f:
    json.dump(config.to_json(), f, indent=1, sort_keys=True)


def with_teacher(student: RunConfig, mode: str,
                 weights: "distill.LossWeights | dict" = distill.LossWeights(),
                 teacher_dir: str | None = None,
                 parallel_teacher: RunConfig | None = None,
                 share_head: bool = False) -> RunConfig:
  """The student's run with its distillation record.

  mode "serial": the teacher is the trained run in teacher_dir (its latest checkpoint, frozen).
  mode "parallel": the teacher, trained alongside, is parallel_teacher, by default the
  student's model and hyper-parameters on every frame.
  weights: a distill.LossWeights, or a dict of its fields (and optionally "share_head").
  """
  if isinstance(weights, dict):
    weights = dict(weights)
    share_head = bool(weights.pop("share_head", share_head))
    weights = distill.LossWeights(**weights)
  if not student.student_frames:
    raise RunConfigError(f"--distillation={mode} needs --student_frames (the student's k)")
  if mode == "serial":
    if not teacher_dir:
      raise RunConfigError("--distillation=serial needs --teacher_dir (a trained teacher)")
    teacher = load(teacher_dir)
    if teacher.student_frames or teacher.distillation:
      raise RunConfigError(f"--teacher_dir {teacher_dir} holds a student, not a teacher")
    for key in ("feature_names", "feature_sizes", "frame_features", "num_classes"):
      if getattr(teacher, key) != getattr(student, key):
        raise RunConfigError(f"--teacher_dir {teacher_dir} has {key}="
                             f"{getattr(teacher, key)!r}, the student "
                             f"{getattr(student, key)!r}")
    checkpoint = tf.train.latest_checkpoint(teacher_dir)
    if not checkpoint:
      raise RunConfigError(f"--teacher_dir {teacher_dir} has no checkpoint")
    extra = {"teacher_dir": teacher_dir, "teacher_checkpoint": checkpoint}
  elif mode == "parallel":
    if teacher_dir:
      raise RunConfigError("--teacher_dir is for serial distillation; parallel trains its "
                           "teacher")
    teacher = parallel_teacher or dataclasses.replace(student, student_frames=None,
                                                      frame_selection="uniform",
                                                      selector_hparams=None)
    extra = {}
  else:
    raise RunConfigError(f"unknown distillation mode {mode!r}")
  record = Distillation(mode=mode, teacher=teacher, weights=weights, share_head=share_head,
                        **extra)
  return dataclasses.replace(student, distillation=record)
