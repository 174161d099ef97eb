"""Flags shared by train.py and eval.py: the starter's model hyper-parameter flags.

The starter defined these at import time in frame_level_models.py / video_level_models.py;
here they are defined once, at the edge, and turned into constructor keyword arguments:
models never read flags.
"""

from absl import flags

from yt8m import models

flags.DEFINE_integer("moe_num_mixtures", 2, "Number of mixtures (excluding the dummy "
                     "'expert') used for MoeModel.")
flags.DEFINE_integer("iterations", 30, "Number of frames per batch for DBoF.")
flags.DEFINE_bool("dbof_add_batch_norm", True, "Adds batch normalization to the DBoF model.")
flags.DEFINE_bool("sample_random_frames", True, "If true samples random frames (for frame "
                  "level models). If false, a random sequence of frames is sampled instead.")
flags.DEFINE_integer("dbof_cluster_size", 8192, "Number of units in the DBoF cluster layer.")
flags.DEFINE_integer("dbof_hidden_size", 1024, "Number of units in the DBoF hidden layer.")
flags.DEFINE_string("dbof_pooling_method", "max", "The pooling method used in the DBoF cluster "
                    "layer. Choices are 'average' and 'max'.")
flags.DEFINE_string("dbof_activation", "sigmoid", "The nonlinear activation method for cluster "
                    "and hidden dense layer, e.g., sigmoid, relu6, etc.")
flags.DEFINE_string("video_level_classifier_model", "MoeModel", "Some Frame-Level models can "
                    "be decomposed into a generalized pooling operation followed by a "
                    "classifier layer")
flags.DEFINE_integer("lstm_cells", 1024, "Number of LSTM cells.")
flags.DEFINE_integer("lstm_layers", 2, "Number of LSTM layers.")

# The distillation teachers (names as in WILLOW's and linrongc's YouTube-8M code).
flags.DEFINE_integer("hrnn_block_frames", 15, "HierarchicalLstmModel: frames per block of the "
                     "lower LSTM (the paper's l).")
flags.DEFINE_enum("hrnn_pooling", "final", ["final", "attention"], "HierarchicalLstmModel: "
                  "the video representation: the upper LSTM's final state (the paper's) or "
                  "gated attention pooling over the blocks.")
flags.DEFINE_float("hrnn_drop_rate", 0.0, "HierarchicalLstmModel: dropout on the video "
                   "representation (training).")
flags.DEFINE_integer("netvlad_cluster_size", 256, "NetVladModel: clusters (audio uses half).")
flags.DEFINE_integer("netvlad_hidden_size", 1024, "NetVladModel: hidden layer width.")
flags.DEFINE_bool("netvlad_add_batch_norm", True, "NetVladModel: batch norm on the inputs and "
                  "cluster assignment.")
flags.DEFINE_bool("netvlad_relu", False, "NetVladModel: batch norm + relu6 on the hidden layer.")
flags.DEFINE_bool("gating", True, "NetVladModel: context gating after the hidden layer.")
flags.DEFINE_bool("moe_prob_gating", True, "NetVladModel: context gating of the probabilities.")
flags.DEFINE_float("bn_momentum", 0.999, "NetVladModel, NeXtVladModel: batch-norm momentum "
                   "(slim's 0.999; a run of a few hundred steps needs less, e.g. 0.9, or its "
                   "evaluation statistics stay near their initial values).")
flags.DEFINE_integer("nextvlad_cluster_size", 128, "NeXtVladModel: clusters.")
flags.DEFINE_integer("nextvlad_hidden_size", 2048, "NeXtVladModel: hidden layer width.")
flags.DEFINE_integer("groups", 8, "NeXtVladModel: groups.")
flags.DEFINE_integer("expansion", 2, "NeXtVladModel: expansion factor.")
flags.DEFINE_integer("gating_reduction", 8, "NeXtVladModel: SE context gating reduction.")
flags.DEFINE_float("drop_rate", 0.5, "NeXtVladModel: dropout on the VLAD vector (training).")
flags.DEFINE_integer("attention_scorer_size", 128, "AttentionPoolingModel (and "
                     "HierarchicalLstmModel with --hrnn_pooling=attention): width of the gated "
                     "frame (block) scorer.")
flags.DEFINE_integer("attention_heads", 4, "AttentionPoolingModel: attention heads.")
flags.DEFINE_integer("attention_hidden_size", 512, "AttentionPoolingModel: hidden layer width.")
flags.DEFINE_float("attention_drop_rate", 0.5, "AttentionPoolingModel: dropout on the pooled "
                   "frames (training).")
flags.DEFINE_float("frame_dropout", 0.0, "AttentionPoolingModel: probability of hiding a real "
                   "frame from the attention (training).")

FLAGS = flags.FLAGS

MODEL_FLAG_NAMES = ("moe_num_mixtures", "iterations", "dbof_add_batch_norm",
                    "sample_random_frames", "dbof_cluster_size", "dbof_hidden_size",
                    "dbof_pooling_method", "dbof_activation", "video_level_classifier_model",
                    "lstm_cells", "lstm_layers", "hrnn_block_frames", "hrnn_pooling",
                    "hrnn_drop_rate", "netvlad_cluster_size",
                    "netvlad_hidden_size", "netvlad_add_batch_norm", "netvlad_relu", "gating",
                    "moe_prob_gating", "bn_momentum", "nextvlad_cluster_size", "nextvlad_hidden_size",
                    "groups", "expansion", "gating_reduction", "drop_rate",
                    "attention_scorer_size", "attention_heads", "attention_hidden_size",
                    "attention_drop_rate", "frame_dropout")


def model_hparams(model_name: str, feature_sizes: tuple[int, ...] = ()) -> dict:
  """The model flags that are fields of `model_name`'s Hparams, as a dict (and, for the
  two-branch VLAD models, the rgb width: the first of --feature_sizes)."""
  try:
    accepted = models.hparam_names(model_name)  # the model's Hparams: one source of truth
  except ValueError:
    raise ValueError(f"unknown --model {model_name!r}; choose one of "
                     f"{', '.join(sorted(models.MODELS))}") from None
  hparams = {name: FLAGS[name].value for name in MODEL_FLAG_NAMES if name in accepted}
  if "rgb_size" in accepted and feature_sizes:
    hparams["rgb_size"] = feature_sizes[0]
  return hparams


def explicitly_set_model_flags() -> dict:
  """Model flags given on this command line (eval.py checks them against the saved run)."""
  return {name: FLAGS[name].value for name in MODEL_FLAG_NAMES if FLAGS[name].present}
