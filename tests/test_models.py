"""Models: output contract, registry, padding invariance, parity with the starter's maths."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import numpy_lstm, padded_videos
from yt8m import models
from yt8m.models import layers
from yt8m.models.frame_level import DbofModel, LstmModel
from yt8m.models.video_level import MoeModel

C, D = 7, 12
SMALL = {
    "DbofModel": dict(iterations=5, dbof_cluster_size=8, dbof_hidden_size=8),
    "LstmModel": dict(lstm_cells=6),
    "HierarchicalLstmModel": dict(lstm_cells=3, hrnn_block_frames=4),
    "NetVladModel": dict(rgb_size=8, netvlad_cluster_size=4, netvlad_hidden_size=5),
    "NeXtVladModel": dict(rgb_size=8, nextvlad_cluster_size=4, nextvlad_hidden_size=5,
                          groups=2, gating_reduction=2),
    "AttentionPoolingModel": dict(attention_scorer_size=4, attention_heads=2,
                                  attention_hidden_size=5),
}
REPRESENTATION_SIZE = {"LogisticModel": D, "MoeModel": D, "FrameLevelLogisticModel": D,
                       "DbofModel": 8, "LstmModel": 6, "HierarchicalLstmModel": 12,
                       "NetVladModel": 5, "NeXtVladModel": 5, "AttentionPoolingModel": 5}


def build(name, **hparams):
  return models.build_model(name, C, {**SMALL.get(name, {}), **hparams})


def videos(num_frames, t, seed=0, pad_value=0.0):
  return padded_videos(num_frames, t, D, seed, pad_value)


def inputs(name, seed=0):
  if name in models.VIDEO_LEVEL_MODELS:
    return np.random.default_rng(seed).normal(size=(3, D)).astype(np.float32), None
  return videos([9, 4, 1], 9, seed)


def test_registry_covers_the_starter_and_teacher_models():
  assert set(models.MODELS) == {"LogisticModel", "MoeModel", "FrameLevelLogisticModel",
                                "DbofModel", "LstmModel", "HierarchicalLstmModel",
                                "NetVladModel", "NeXtVladModel", "AttentionPoolingModel"}
  assert models.VIDEO_LEVEL_MODELS | models.FRAME_LEVEL_MODELS == set(models.MODELS)
  assert not models.VIDEO_LEVEL_MODELS & models.FRAME_LEVEL_MODELS


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_output_contract(name):
  model = build(name)
  x, n = inputs(name)
  for training in (False, True):
    out = model(x, num_frames=n, training=training)
    p = out["predictions"].numpy()
    assert p.shape == (3, C)
    assert np.all(np.isfinite(p)) and p.min() >= 0 and p.max() <= 1
    assert out["representation"].shape == (3, REPRESENTATION_SIZE[name])
    assert np.all(np.isfinite(out["representation"].numpy()))
  # The model owns the L2 normalisation: the scale of the raw features does not matter.
  np.testing.assert_allclose(model(3.5 * x, num_frames=n)["predictions"],
                             model(x, num_frames=n)["predictions"], atol=1e-6)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_config_round_trip(name):
  model = build(name, l2_penalty=1e-3)
  x, n = inputs(name)
  expected = model(x, num_frames=n)["predictions"]
  clone = type(model).from_config(model.get_config())
  clone(x, num_frames=n)
  assert [(w.path, w.shape) for w in clone.weights] == [(w.path, w.shape) for w in model.weights]
  assert clone.get_config() == model.get_config()
  clone.set_weights(model.get_weights())
  np.testing.assert_allclose(clone(x, num_frames=n)["predictions"], expected, atol=1e-6)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_predictions_stay_float32_under_mixed_precision(name):
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    model = build(name)
    x, n = inputs(name)
    assert model(x, num_frames=n)["predictions"].dtype == tf.float32
  finally:
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name", sorted(models.FRAME_LEVEL_MODELS))
def test_build_from_shape_creates_weights(name):
  model = build(name)
  model.build((None, 9, D))
  assert model.trainable_variables


def test_unknown_model_lists_valid_names():
  with pytest.raises(ValueError, match="DbofModel.*LstmModel"):
    models.build_model("NetRVladModel", C)


def test_unknown_hparam_is_rejected():
  with pytest.raises(ValueError, match="lstm_cells"):
    models.build_model("DbofModel", C, {"lstm_cells": 4})
  assert "iterations" in models.hparam_names("DbofModel")


@pytest.mark.parametrize("name,hparams,bad", [
    ("MoeModel", dict(moe_num_mixtures=0), "moe_num_mixtures"),
    ("LogisticModel", dict(l2_penalty=-1.0), "l2_penalty"),
    ("DbofModel", dict(dbof_pooling_method="none"), "dbof_pooling_method"),
    ("DbofModel", dict(dbof_activation="relu"), "dbof_activation"),
    ("DbofModel", dict(video_level_classifier_model="DbofModel"), "video_level_classifier_model"),
    ("DbofModel", dict(sample_random_frames="False"), "sample_random_frames"),
    ("DbofModel", dict(dbof_add_batch_norm=0), "dbof_add_batch_norm"),
    ("DbofModel", dict(iterations=0), "iterations"),
    ("DbofModel", dict(dbof_cluster_size=2.5), "dbof_cluster_size"),
    ("LstmModel", dict(lstm_layers=0), "lstm_layers"),
    ("LstmModel", dict(lstm_cells=True), "lstm_cells"),
])
def test_bad_hparam_values_name_the_parameter(name, hparams, bad):
  with pytest.raises(ValueError, match=bad):
    build(name, **hparams)


def test_defaults_are_the_starter_flags():
  dbof = DbofModel(C).get_config()
  assert dbof["hparams"] == dict(
      iterations=30, sample_random_frames=True, dbof_add_batch_norm=True,
      dbof_cluster_size=8192, dbof_hidden_size=1024, dbof_pooling_method="max",
      dbof_activation="sigmoid", video_level_classifier_model="MoeModel", moe_num_mixtures=2,
      l2_penalty=1e-8)
  lstm = LstmModel(C).get_config()
  assert lstm["hparams"] == dict(lstm_cells=1024, lstm_layers=2,
                                 video_level_classifier_model="MoeModel", moe_num_mixtures=2,
                                 l2_penalty=1e-8)
  assert MoeModel(C).hparams.moe_num_mixtures == 2


def test_video_level_models_ignore_num_frames():
  x, _ = inputs("MoeModel")
  model = build("MoeModel")
  np.testing.assert_array_equal(model(x)["predictions"],
                                model(x, num_frames=np.array([5, 1, 2], np.int32))["predictions"])
  out = build("LogisticModel")(x)
  np.testing.assert_allclose(out["predictions"], tf.sigmoid(out["logits"]), atol=1e-7)


# --- padding invariance -------------------------------------------------------------------

FRAME_CONFIGS = [
    ("FrameLevelLogisticModel", {}),
    ("DbofModel", {}),
    ("DbofModel", dict(dbof_add_batch_norm=False, dbof_pooling_method="average",
                       dbof_activation="relu6", video_level_classifier_model="LogisticModel")),
    ("DbofModel", dict(sample_random_frames=False, iterations=12)),
    ("LstmModel", {}),
    ("LstmModel", dict(lstm_layers=1, video_level_classifier_model="LogisticModel")),
]


@pytest.mark.parametrize("name,hparams", FRAME_CONFIGS)
def test_padding_never_changes_the_result(name, hparams):
  model = build(name, **hparams)
  short, n = videos([9, 4, 1], 9, seed=1)
  # Same real frames, longer tensor, and padding that is not even zero.
  long = np.concatenate([short, np.zeros((3, 11, D), np.float32)], axis=1)
  for b, count in enumerate(n):
    long[b, count:] = 7.0
  a = model(short, num_frames=n)
  b = model(long, num_frames=n)
  for key in ("predictions", "representation"):
    np.testing.assert_allclose(a[key], b[key], atol=1e-6)
    assert np.all(np.isfinite(a[key].numpy()))


def test_frame_level_logistic_is_logistic_on_the_mean_frame():
  x, n = videos([6, 2], 8, seed=2)
  model = build("FrameLevelLogisticModel")
  out = model(x, num_frames=n)
  frames = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)
  mean = np.stack([frames[b, :count].mean(0) for b, count in enumerate(n)])
  np.testing.assert_allclose(out["representation"], mean, atol=1e-6)
  kernel, bias = model.logistic.get_weights()
  np.testing.assert_allclose(out["predictions"], 1 / (1 + np.exp(-(mean @ kernel + bias))),
                             atol=1e-6)


# --- layers -------------------------------------------------------------------------------

def test_l2_normalize_frames_keeps_padding_zero():
  x, _ = videos([3], 5, seed=3)
  y = layers.l2_normalize_frames(x).numpy()
  np.testing.assert_allclose(np.linalg.norm(y[0, :3], axis=-1), 1.0, atol=1e-6)
  np.testing.assert_array_equal(y[0, 3:], 0.0)
  np.testing.assert_array_equal(layers.frame_mask([2, 0], 3), [[1, 1, 0], [0, 0, 0]])


def test_slim_l2_halves_the_keras_scale():
  w = tf.constant([[1.0, -2.0], [3.0, 0.5]])
  assert float(layers.slim_l2(0.4)(w)) == pytest.approx(0.4 * float(tf.nn.l2_loss(w)))
  assert layers.slim_l2(0.0) is None


def test_evenly_spaced_frames_cover_the_true_length():
  idx = layers.evenly_spaced_frames(tf.constant([300, 10, 3, 1]), 5).numpy()
  np.testing.assert_array_equal(idx, [[0, 60, 120, 180, 240], [0, 2, 4, 6, 8],
                                      [0, 0, 1, 1, 2], [0, 0, 0, 0, 0]])


def test_sample_random_frames_is_uniform_with_replacement_over_real_frames():
  n = tf.constant([4, 1, 300])
  idx = layers.sample_random_frames(n, 2000).numpy()
  assert idx.shape == (3, 2000)
  assert set(idx[0]) == {0, 1, 2, 3}
  assert set(idx[1]) == {0}
  assert idx[2].min() >= 0 and idx[2].max() < 300
  counts = np.bincount(idx[0], minlength=4)
  assert counts.min() > 400  # ~500 each
  assert not np.array_equal(idx, layers.sample_random_frames(n, 2000).numpy())


def test_sample_random_sequence_is_a_window_that_repeats_the_last_frame():
  n = tf.constant([3, 50])
  starts = set()
  for _ in range(20):
    idx = layers.sample_random_sequence(n, 5).numpy()
    np.testing.assert_array_equal(idx[0], [0, 1, 2, 2, 2])
    assert np.all(np.diff(idx[1]) == 1) and 0 <= idx[1, 0] <= 45
    starts.add(idx[1, 0])
  assert len(starts) > 1


# --- MoE ----------------------------------------------------------------------------------

def test_moe_matches_numpy_on_fixed_weights():
  m = 3
  model = build("MoeModel", moe_num_mixtures=m)
  x, _ = inputs("MoeModel", seed=4)
  model(x)
  rng = np.random.default_rng(5)
  gate_kernel = rng.normal(size=(D, C * (m + 1))).astype(np.float32)
  expert_kernel = rng.normal(size=(D, C * m)).astype(np.float32)
  expert_bias = rng.normal(size=(C * m,)).astype(np.float32)
  model.gates.set_weights([gate_kernel])  # one weight only: the gate has no bias
  model.experts.set_weights([expert_kernel, expert_bias])
  assert not model.gates.use_bias and len(model.gates.weights) == 1

  v = x / np.linalg.norm(x, axis=1, keepdims=True)
  gates = (v @ gate_kernel).reshape(-1, m + 1)
  gates = np.exp(gates - gates.max(1, keepdims=True))
  gates /= gates.sum(1, keepdims=True)
  experts = 1 / (1 + np.exp(-(v @ expert_kernel + expert_bias).reshape(-1, m)))
  expected = (gates[:, :m] * experts).sum(1).reshape(-1, C)
  np.testing.assert_allclose(model(x)["predictions"], expected, rtol=1e-5, atol=1e-6)


def test_moe_l2_terms_are_slim_style():
  s = 0.25
  model = build("MoeModel", l2_penalty=s)
  x, _ = inputs("MoeModel")
  model(x)
  kernels = [model.gates.kernel.numpy(), model.experts.kernel.numpy()]
  expected = s * sum((k ** 2).sum() for k in kernels) / 2
  assert len(model.losses) == 2  # the kernels only: no penalty on the expert bias
  assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)
  assert not build("MoeModel", l2_penalty=0.0).losses


# --- DBoF ---------------------------------------------------------------------------------

def test_dbof_training_samples_afresh_but_eval_is_deterministic():
  model = build("DbofModel", iterations=3)
  x, n = videos([40, 30, 25], 40, seed=6)
  train = [model(x, num_frames=n, training=True)["representation"].numpy() for _ in range(2)]
  assert not np.allclose(train[0], train[1])
  evals = [model(x, num_frames=n, training=False)["representation"].numpy() for _ in range(2)]
  np.testing.assert_array_equal(evals[0], evals[1])
  # Also inside a tf.function (the training loop's graph): still fresh frames per call.
  step = tf.function(lambda f, c: model(f, num_frames=c, training=True)["representation"])
  assert not np.allclose(step(x, n).numpy(), step(x, n).numpy())


def test_dbof_sampling_mode_follows_the_flags():
  n = tf.constant([50, 2])
  sequence = build("DbofModel", sample_random_frames=False, iterations=4)
  idx = sequence.sample_indices(n, training=True).numpy()
  assert np.all(np.diff(idx[0]) == 1)
  np.testing.assert_array_equal(idx[1], [0, 1, 1, 1])
  evenly = sequence.sample_indices(n, training=False).numpy()
  np.testing.assert_array_equal(evenly, [[0, 12, 25, 37], [0, 0, 1, 1]])


def test_dbof_batch_norm_is_slim_and_can_be_turned_off():
  model = build("DbofModel")
  model.build((None, 9, D))
  for bn in (model.input_bn, model.cluster_bn, model.hidden_bn):
    assert bn.momentum == 0.999 and bn.epsilon == 0.001 and bn.center and bn.scale
  assert not model.cluster.use_bias and not model.hidden.use_bias

  plain = build("DbofModel", dbof_add_batch_norm=False)
  plain.build((None, 9, D))
  assert plain.input_bn is None and plain.cluster_bn is None and plain.hidden_bn is None
  assert plain.cluster.use_bias and plain.hidden.use_bias
  assert not any("batch_normalization" in w.path or "_bn" in w.path for w in plain.weights)


def test_dbof_initialisers_and_regularisation_match_the_starter():
  dim, cluster = 400, 256
  model = models.build_model("DbofModel", C, dict(dbof_cluster_size=cluster, dbof_hidden_size=300,
                                                  dbof_add_batch_norm=False, l2_penalty=0.5))
  model.build((None, 5, dim))
  assert np.std(model.cluster.kernel.numpy()) == pytest.approx(1 / np.sqrt(dim), rel=0.03)
  assert np.std(model.hidden.kernel.numpy()) == pytest.approx(1 / np.sqrt(cluster), rel=0.03)
  assert np.std(model.cluster.bias.numpy()) == pytest.approx(1 / np.sqrt(dim), rel=0.3)
  assert np.std(model.hidden.bias.numpy()) == pytest.approx(0.01, rel=0.3)
  # Only the classifier's two kernels are penalised.
  head = model.classifier
  expected = 0.5 * sum((k.numpy() ** 2).sum() for k in (head.gates.kernel, head.experts.kernel))
  assert len(model.losses) == 2
  assert float(sum(model.losses)) == pytest.approx(expected / 2, rel=1e-5)


def test_dbof_head_is_the_registry_classifier_without_renormalisation():
  model = build("DbofModel", video_level_classifier_model="LogisticModel")
  x, n = videos([5, 2], 6, seed=7)
  out = model(x, num_frames=n)
  assert type(model.classifier).__name__ == "LogisticModel"
  assert not model.classifier.hparams.normalize_input
  np.testing.assert_allclose(out["predictions"],
                             model.classifier(out["representation"])["predictions"], atol=1e-7)


# --- LSTM ---------------------------------------------------------------------------------

def test_lstm_final_state_is_the_last_real_frame():
  model = build("LstmModel")
  x, n = videos([9, 5, 1], 12, seed=8)
  out = model(x, num_frames=n)
  for lstm in model.lstms:
    units = lstm.cell.units
    np.testing.assert_array_equal(lstm.cell.bias.numpy()[units:2 * units], 1.0)  # forget gate
  frames = layers.l2_normalize_frames(x).numpy()
  for b, count in enumerate(n):
    seq = frames[b, :count]
    for lstm in model.lstms:
      seq, _ = numpy_lstm(seq, *[w.numpy() for w in lstm.cell.weights])
    np.testing.assert_allclose(out["representation"][b], seq[-1], atol=1e-5)
    # The same weights run on the unpadded video alone agree too.
    alone = model(x[b:b + 1, :count], num_frames=n[b:b + 1])
    np.testing.assert_allclose(alone["representation"][0], out["representation"][b], atol=1e-6)
    np.testing.assert_allclose(alone["predictions"][0], out["predictions"][b], atol=1e-6)


def test_a_run_holds_typed_hyper_parameters_and_reads_partial_old_files():
  from yt8m import run_config
  from yt8m.models import selector
  run = run_config.RunConfig(model="LstmModel", feature_names=("rgb",), feature_sizes=(8,),
                             frame_features=True, student_frames=4, frame_selection="learned",
                             model_hparams={"lstm_cells": 8})
  assert type(run.model_hparams) is LstmModel.Hparams and run.model_hparams.lstm_cells == 8
  assert run.model_hparams.lstm_layers == 2  # a key an older file did not hold: its default
  assert run.selector_hparams == selector.SelectorHparams()
  saved = run.to_json()
  assert saved["model_hparams"]["lstm_layers"] == 2 and saved["selector_hparams"]["selector_hidden"]
  assert run_config.RunConfig.from_json(saved) == run
  uniform = run_config.RunConfig(model="LstmModel", feature_names=("rgb",), feature_sizes=(8,),
                                 frame_features=True, selector_hparams={"selector_hidden": 3})
  assert uniform.selector_hparams is None and uniform.to_json()["selector_hparams"] == {}
  with pytest.raises(ValueError, match="LstmModel does not take hyper-parameter.*dbof_cluster"):
    run_config.RunConfig(model="LstmModel", feature_names=("rgb",), feature_sizes=(8,),
                         frame_features=True, model_hparams={"dbof_cluster_size": 8})
  with pytest.raises(ValueError, match="selector_temperature must be > 0"):
    selector.SelectorHparams(selector_temperature=0.0)
  with pytest.raises(ValueError, match="lstm_cells must be an integer"):
    LstmModel.Hparams(lstm_cells=2.5)
