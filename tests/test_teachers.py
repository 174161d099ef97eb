"""Teacher families (H-RNN, gated NetVLAD, NeXtVLAD): output contract at teacher and student
lengths, masking, permutation invariance, the maths on fixed weights, configs, checkpoints."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import numpy_lstm, padded_videos
from yt8m import building, models
from yt8m.models import layers
from yt8m.models.teachers import (
  AttentionPoolingModel,
  HierarchicalLstmModel,
  NetVlad,
  NetVladModel,
  NeXtVlad,
  NeXtVladModel,
  student_block_frames,
)

C, D, RGB = 7, 12, 8  # features[..., :8] rgb, [..., 8:] audio
CELLS = 3
SMALL = {
    "HierarchicalLstmModel": dict(lstm_cells=CELLS, hrnn_block_frames=15),
    "NetVladModel": dict(rgb_size=RGB, netvlad_cluster_size=4, netvlad_hidden_size=8),
    "NeXtVladModel": dict(rgb_size=RGB, nextvlad_cluster_size=4, nextvlad_hidden_size=8,
                          groups=2, gating_reduction=2),
    "AttentionPoolingModel": dict(attention_scorer_size=5, attention_heads=2,
                                  attention_hidden_size=6, attention_drop_rate=0.0),
}
NAMES = sorted(SMALL)
REPRESENTATION_SIZE = {"HierarchicalLstmModel": 4 * CELLS, "NetVladModel": 8,
                       "NeXtVladModel": 8, "AttentionPoolingModel": 6}
VLAD_NAMES = ["NetVladModel", "NeXtVladModel"]


def build(name, **hparams):
  return models.build_model(name, C, {**SMALL[name], **hparams})


def videos(num_frames, t, seed=0, pad_value=0.0):
  return padded_videos(num_frames, t, D, seed, pad_value)


def assert_outputs_equal(a, b, atol=1e-5, keys=("predictions", "representation")):
  for key in keys:
    np.testing.assert_allclose(a[key], b[key], atol=atol, err_msg=key)


# --- registry and output contract ---------------------------------------------------------


def test_registry_builds_the_teachers():
  for name, cls in (("HierarchicalLstmModel", HierarchicalLstmModel),
                    ("NetVladModel", NetVladModel), ("NeXtVladModel", NeXtVladModel),
                    ("AttentionPoolingModel", AttentionPoolingModel)):
    assert models.MODELS[name] is cls
    assert name in models.FRAME_LEVEL_MODELS and name not in models.VIDEO_LEVEL_MODELS
    # Hparams, the one list of a model's hyper-parameters, is what the model holds and saves.
    model = build(name)
    assert isinstance(model, cls) and type(model.hparams) is cls.Hparams
    assert models.hparam_names(name) == tuple(model.get_config()["hparams"])
    assert type(cls.from_config(model.get_config()).hparams) is cls.Hparams


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("t,num_frames,block_frames", [
    (300, [300, 17, 1], 15),  # teacher: 20 blocks of 15
    (6, [6, 3, 1], 15),       # student k = 6: one block
    (30, [30, 7, 1], 6),      # student k = 30: the authors' 5 blocks of 6
])
def test_output_contract(name, t, num_frames, block_frames):
  hparams = dict(hrnn_block_frames=block_frames) if name == "HierarchicalLstmModel" else {}
  model = build(name, **hparams)
  x, n = videos(num_frames, t)
  for training in (False, True):
    out = model(x, num_frames=n, training=training)
    p = out["predictions"].numpy()
    assert p.shape == (3, C) and out["predictions"].dtype == tf.float32
    assert np.all(np.isfinite(p)) and p.min() >= 0 and p.max() <= 1
    assert out["representation"].shape == (3, REPRESENTATION_SIZE[name])
    assert np.all(np.isfinite(out["representation"].numpy()))
  if name == "HierarchicalLstmModel":
    num_blocks = math.ceil(t / block_frames)
    assert out["intermediates"].shape == (3, num_blocks, 4 * CELLS)
    assert out["intermediate_mask"].dtype == tf.float32
    expected = [[float(i * block_frames < count) for i in range(num_blocks)] for count in n]
    np.testing.assert_array_equal(out["intermediate_mask"], expected)
  # num_frames=None means every frame is real.
  full, _ = videos([t] * 3, t, seed=1)
  assert_outputs_equal(model(full), model(full, num_frames=np.full([3], t, np.int32)))


@pytest.mark.parametrize("name", NAMES)
def test_predictions_stay_float32_under_mixed_precision(name):
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    x, n = videos([9, 4, 1], 9)
    out = build(name)(x, num_frames=n)
    assert out["predictions"].dtype == tf.float32
    assert np.all(np.isfinite(out["predictions"].numpy()))
  finally:
    keras.mixed_precision.set_global_policy("float32")


# --- padding and frame order ----------------------------------------------------------------

PADDING_CONFIGS = [
    ("HierarchicalLstmModel", {}),
    ("HierarchicalLstmModel", dict(hrnn_block_frames=4, lstm_layers=1,
                                   video_level_classifier_model="LogisticModel")),
    ("HierarchicalLstmModel", dict(hrnn_block_frames=4, hrnn_pooling="attention")),
    ("NetVladModel", {}),
    ("NetVladModel", dict(netvlad_add_batch_norm=False, gating=False, moe_prob_gating=False,
                          video_level_classifier_model="LogisticModel")),
    ("NetVladModel", dict(netvlad_relu=True)),
    ("NeXtVladModel", dict(drop_rate=0.0)),
    ("NeXtVladModel", dict(drop_rate=0.0, video_level_classifier_model="MoeModel")),
    ("AttentionPoolingModel", {}),
    ("AttentionPoolingModel", dict(attention_heads=1,
                                   video_level_classifier_model="LogisticModel")),
]


@pytest.mark.parametrize("name,hparams", PADDING_CONFIGS)
def test_padding_never_changes_the_result(name, hparams):
  model = build(name, **hparams)
  short, n = videos([20, 9, 4, 1], 20, seed=1)
  # Same real frames, longer tensor, and padding that is not even zero.
  long = np.concatenate([short, np.zeros((4, 20, D), np.float32)], axis=1)
  for b, count in enumerate(n):
    short[b, count:] = 7.0
    long[b, count:] = 7.0
  # In training mode too: batch-norm statistics come from the real frames only.
  for training in (False, True):
    a = model(short, num_frames=n, training=training)
    b = model(long, num_frames=n, training=training)
    assert_outputs_equal(a, b)
    assert np.all(np.isfinite(a["predictions"].numpy()))
  if name == "HierarchicalLstmModel":
    # The extra blocks of the longer tensor are empty and zero.
    blocks = a["intermediates"].shape[1]
    np.testing.assert_allclose(b["intermediates"][:, :blocks], a["intermediates"], atol=1e-5)
    np.testing.assert_array_equal(b["intermediates"][:, blocks:], 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_non_finite_padding_never_leaks(name):
  model = build(name)
  x, n = videos([9, 4, 1], 9, seed=2)
  garbage = x.copy()
  for b, count in enumerate(n):
    garbage[b, count:] = np.nan
    garbage[b, -1] = np.inf if count < 9 else garbage[b, -1]
  a, b = model(x, num_frames=n), model(garbage, num_frames=n)
  assert_outputs_equal(a, b)
  assert np.all(np.isfinite(b["predictions"].numpy()))


@pytest.mark.parametrize("name", VLAD_NAMES)
def test_vlad_models_ignore_the_order_of_the_real_frames(name):
  model = build(name, **({"drop_rate": 0.0} if name == "NeXtVladModel" else {}))
  x, n = videos([15, 8, 1], 20, seed=3, pad_value=7.0)
  shuffled = x.copy()
  rng = np.random.default_rng(4)
  for b, count in enumerate(n):
    shuffled[b, :count] = x[b, rng.permutation(count)]
  assert not np.array_equal(shuffled, x)
  for training in (False, True):
    assert_outputs_equal(model(x, num_frames=n, training=training),
                         model(shuffled, num_frames=n, training=training))


def test_nextvlad_dropout_only_when_training():
  model = build("NeXtVladModel", drop_rate=0.5)
  x, n = videos([9, 4, 1], 9, seed=5)
  assert_outputs_equal(model(x, num_frames=n), model(x, num_frames=n), atol=0)
  assert model.dropout.rate == 0.5
  hidden = [model(x, num_frames=n, training=True)["representation"].numpy() for _ in range(2)]
  assert not np.allclose(hidden[0], hidden[1])


# --- H-RNN -----------------------------------------------------------------------------------


def _numpy_stack(lstms, seq):
  """The final [c1, h1, c2, h2, ...] of a Keras LSTM stack run over exactly seq [S, F]."""
  state = []
  for lstm in lstms:
    seq, c = numpy_lstm(seq, *[w.numpy() for w in lstm.cell.weights])
    state += [c, seq[-1]]
  return np.concatenate(state)


def test_hrnn_masking_matches_running_each_block_on_its_real_frames():
  model = build("HierarchicalLstmModel", hrnn_block_frames=4)
  x, n = videos([11, 8, 4, 1], 13, seed=6, pad_value=7.0)
  model(x, num_frames=n)
  # Non-zero biases everywhere, so that an LSTM step on a zero frame leaves a non-zero state.
  rng = np.random.default_rng(60)
  for lstm in model.lower_lstms + model.upper_lstms:
    lstm.cell.bias.assign(rng.normal(size=lstm.cell.bias.shape).astype(np.float32))
  out = model(x, num_frames=n)
  assert out["representation"].shape == (4, 4 * CELLS)  # [c1, h1, c2, h2]
  assert out["intermediates"].shape == (4, 4, 4 * CELLS)  # ceil(13 / 4) blocks
  np.testing.assert_array_equal(out["intermediate_mask"],
                                [[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]])
  frames = layers.l2_normalize_frames(x).numpy()
  for b, count in enumerate(n):
    encodings = []
    for start in range(0, 13, 4):
      if start >= count:  # an empty block's encoding is exactly zero
        np.testing.assert_array_equal(out["intermediates"][b, start // 4], 0.0)
        continue
      encodings.append(_numpy_stack(model.lower_lstms, frames[b, start:min(count, start + 4)]))
      np.testing.assert_allclose(out["intermediates"][b, start // 4], encodings[-1], atol=1e-5)
    video = _numpy_stack(model.upper_lstms, np.array(encodings))
    np.testing.assert_allclose(out["representation"][b], video, atol=1e-5)
    expected = model.classifier(video[None].astype(np.float32))["predictions"][0]
    np.testing.assert_allclose(out["predictions"][b], expected, atol=1e-5)
    # The video alone, unpadded, agrees too.
    alone = model(x[b:b + 1, :count], num_frames=n[b:b + 1])
    assert_outputs_equal({k: v[0] for k, v in alone.items()}, {k: v[b] for k, v in out.items()})


def test_hrnn_sizes_and_cudnn_friendly_lstms():
  model = build("HierarchicalLstmModel", lstm_layers=3, hrnn_block_frames=5)
  x, n = videos([12, 3], 12, seed=7)
  out = model(x, num_frames=n)
  assert out["representation"].shape == (2, 6 * CELLS)
  assert out["intermediates"].shape == (2, 3, 6 * CELLS)
  assert len(model.lower_lstms) == len(model.upper_lstms) == 3
  for lstm in model.lower_lstms + model.upper_lstms:
    cell = lstm.cell
    assert cell.unit_forget_bias and cell.recurrent_dropout == 0 and cell.dropout == 0
    assert (cell.activation, cell.recurrent_activation) == (keras.activations.tanh,
                                                           keras.activations.sigmoid)
    np.testing.assert_array_equal(cell.bias.numpy()[CELLS:2 * CELLS], 1.0)
  # The lower stack's weights are shared across blocks and distinct from the upper stack's.
  assert model.lower_lstms[0].cell.kernel.shape == (D, 4 * CELLS)
  assert model.upper_lstms[0].cell.kernel.shape == (6 * CELLS, 4 * CELLS)


def test_hrnn_head_is_not_renormalised():
  model = build("HierarchicalLstmModel")
  assert model.classifier.hparams.normalize_input is False
  x, n = videos([5], 5, seed=8)
  out = model(x, num_frames=n)
  np.testing.assert_allclose(model.classifier(out["representation"])["predictions"],
                             out["predictions"], atol=1e-6)


# --- NetVLAD / NeXtVLAD maths on fixed weights ---------------------------------------------


def test_netvlad_pooling_matches_numpy():
  layer = NetVlad(3, add_batch_norm=False)
  x, n = videos([5, 2], 6, seed=9)
  frames = layers.l2_normalize_frames(x).numpy()
  frames[1, 2:] = 0.0
  mask = np.arange(6)[None, :] < n[:, None]
  out = layer(frames, mask).numpy()
  w, bias = layer.assignment.kernel.numpy(), layer.assignment.bias.numpy()
  centers = layer.centers.numpy()
  for b, count in enumerate(n):
    f = frames[b, :count]
    logits = f @ w + bias
    a = np.exp(logits - logits.max(1, keepdims=True))
    a /= a.sum(1, keepdims=True)
    vlad = np.einsum("tk,td->dk", a, f) - a.sum(0)[None, :] * centers  # (D, K)
    vlad /= np.linalg.norm(vlad, axis=0, keepdims=True)
    vlad = vlad.reshape(-1)
    np.testing.assert_allclose(out[b], vlad / np.linalg.norm(vlad), atol=1e-5)
  assert out.shape == (2, D * 3)


def test_nextvlad_pooling_matches_numpy():
  layer = NeXtVlad(3, groups=4, expansion=2)
  x, n = videos([5, 2], 6, seed=10)
  frames = layers.l2_normalize_frames(x).numpy()
  frames[1, 2:] = 0.0
  mask = np.arange(6)[None, :] < n[:, None]
  out = layer(frames, mask).numpy()
  bn_scale = 1 / np.sqrt(1 + layers.SLIM_BN_EPSILON)  # fresh batch norms at inference
  def sigmoid(v):
    return 1 / (1 + np.exp(-v))
  d = 2 * D // 4
  for b, count in enumerate(n):
    e = frames[b, :count] @ layer.expand.kernel.numpy() + layer.expand.bias.numpy()
    alpha = sigmoid(e @ layer.attention.kernel.numpy() + layer.attention.bias.numpy())  # (T, G)
    logits = (e @ layer.assignment.kernel.numpy() * bn_scale).reshape(count, 4, 3)
    a = np.exp(logits - logits.max(-1, keepdims=True))
    a = a / a.sum(-1, keepdims=True) * alpha[:, :, None]  # (T, G, K)
    grouped = e.reshape(count, 4, d)
    vlad = (np.einsum("tgk,tgi->ik", a, grouped) -
            a.sum((0, 1))[None, :] * layer.centers.numpy())
    vlad /= np.linalg.norm(vlad, axis=0, keepdims=True)
    np.testing.assert_allclose(out[b], vlad.reshape(-1) * bn_scale, atol=1e-5)
  assert out.shape == (2, d * 3)


def test_netvlad_structure_follows_willow():
  model = build("NetVladModel")
  x, n = videos([6, 2], 6, seed=11)
  out = model(x, num_frames=n)
  assert (model.rgb_vlad.cluster_size, model.audio_vlad.cluster_size) == (4, 2)
  assert model.hidden.kernel.shape == (RGB * 4 + (D - RGB) * 2, 8)
  assert model.classifier.hparams.normalize_input is False
  # With prob gating the head's probabilities are scaled down by a sigmoid gate.
  head = model.classifier(out["representation"])["predictions"].numpy()
  assert np.all(out["predictions"].numpy() <= head + 1e-7)
  no_audio = build("NetVladModel", rgb_size=D)
  no_audio(x, num_frames=n)
  assert no_audio.audio_vlad is None
  assert no_audio.hidden.kernel.shape == (D * 4, 8)


def test_nextvlad_structure_follows_lin_et_al():
  model = build("NeXtVladModel")
  x, n = videos([6, 2], 6, seed=12)
  model(x, num_frames=n)
  rgb, audio = model.rgb_vlad, model.audio_vlad
  assert (rgb.cluster_size, rgb.groups, rgb.group_size) == (4, 2, 2 * RGB // 2)
  assert (audio.cluster_size, audio.groups, audio.group_size) == (2, 1, 2 * (D - RGB))
  assert model.hidden.kernel.shape == (8 * 4 + 8 * 2, 8)
  assert model.gate_reduce.kernel.shape == (8, 4) and model.gate_expand.kernel.shape == (4, 8)
  assert type(model.classifier).__name__ == "LogisticModel"
  assert model.classifier.hparams.normalize_input is False


@pytest.mark.parametrize("name, count", [("NetVladModel", 5), ("NeXtVladModel", 6)])
def test_bn_momentum_reaches_every_batch_norm(name, count):
  """Slim's 0.999 by default; a short run (the study) sets less on every batch norm."""
  model = build(name, bn_momentum=0.9)
  x, n = videos([6, 2], 6, seed=13)
  model(x, num_frames=n)
  momenta = [layer.momentum for layer in model._flatten_layers()
             if isinstance(layer, keras.layers.BatchNormalization)]
  assert momenta == [0.9] * count
  with pytest.raises(ValueError, match="bn_momentum"):
    build(name, bn_momentum=1.0)


def test_defaults_are_the_reference_settings():
  hrnn = HierarchicalLstmModel(C).get_config()
  assert hrnn["hparams"] == dict(
      lstm_cells=1024, lstm_layers=2, hrnn_block_frames=15, hrnn_pooling="final",
      attention_scorer_size=128, hrnn_drop_rate=0.0,
      video_level_classifier_model="MoeModel", moe_num_mixtures=2, l2_penalty=1e-8)
  netvlad = NetVladModel(C).get_config()
  assert netvlad["hparams"] == dict(
      rgb_size=1024, netvlad_cluster_size=256, netvlad_hidden_size=1024,
      netvlad_add_batch_norm=True, netvlad_relu=False, gating=True, moe_prob_gating=True,
      bn_momentum=0.999, video_level_classifier_model="MoeModel", moe_num_mixtures=2,
      l2_penalty=1e-8)
  nextvlad = NeXtVladModel(C).get_config()
  assert nextvlad["hparams"] == dict(
      rgb_size=1024, nextvlad_cluster_size=128, nextvlad_hidden_size=2048, groups=8,
      expansion=2, gating_reduction=8, drop_rate=0.5, bn_momentum=0.999,
      video_level_classifier_model="LogisticModel", moe_num_mixtures=2, l2_penalty=1e-5)


# --- configs, checkpoints, hyper-parameter errors ------------------------------------------


@pytest.mark.parametrize("name,hparams", [(name, {}) for name in NAMES] + [
    ("HierarchicalLstmModel", dict(hrnn_pooling="attention"))])
def test_checkpoint_round_trip(name, hparams, tmp_path):
  model = build(name, **hparams)
  x, n = videos([9, 4, 1], 9, seed=14)
  model(x, num_frames=n, training=True)  # moves the batch-norm statistics off their init
  building.check_checkpointable(model)
  expected = model(x, num_frames=n)
  path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))

  fresh = build(name, **hparams)
  fresh(x, num_frames=n)
  building.check_checkpointable(fresh)
  assert not np.allclose(fresh(x, num_frames=n)["predictions"], expected["predictions"])
  building.restore(path, model=fresh)
  assert_outputs_equal(fresh(x, num_frames=n), expected, atol=1e-6)
  for restored, saved in zip(fresh.weights, model.weights, strict=True):
    np.testing.assert_array_equal(restored.numpy(), saved.numpy(), err_msg=saved.path)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_hparam_is_rejected(name):
  with pytest.raises(ValueError, match="dbof_cluster_size"):
    build(name, dbof_cluster_size=4)


@pytest.mark.parametrize("name,hparams,bad", [
    ("HierarchicalLstmModel", dict(hrnn_block_frames=0), "hrnn_block_frames"),
    ("HierarchicalLstmModel", dict(lstm_layers=0), "lstm_layers"),
    ("HierarchicalLstmModel", dict(lstm_cells=True), "lstm_cells"),
    ("HierarchicalLstmModel", dict(hrnn_pooling="max"), "hrnn_pooling"),
    ("HierarchicalLstmModel", dict(hrnn_drop_rate=1.0), "hrnn_drop_rate"),
    ("HierarchicalLstmModel", dict(video_level_classifier_model="Dbof"),
     "video_level_classifier_model"),
    ("NetVladModel", dict(netvlad_cluster_size=0), "netvlad_cluster_size"),
    ("NetVladModel", dict(netvlad_hidden_size=2.5), "netvlad_hidden_size"),
    ("NetVladModel", dict(gating="True"), "gating"),
    ("NetVladModel", dict(moe_prob_gating=1), "moe_prob_gating"),
    ("NetVladModel", dict(netvlad_add_batch_norm=None), "netvlad_add_batch_norm"),
    ("NetVladModel", dict(rgb_size=0), "rgb_size"),
    ("NetVladModel", dict(l2_penalty=-1.0), "l2_penalty"),
    ("NeXtVladModel", dict(groups=3), "groups"),
    ("NeXtVladModel", dict(expansion=0), "expansion"),
    ("NeXtVladModel", dict(gating_reduction=16), "gating_reduction"),
    ("NeXtVladModel", dict(drop_rate=1.0), "drop_rate"),
    ("NeXtVladModel", dict(drop_rate="0.5"), "drop_rate"),
    ("NeXtVladModel", dict(moe_num_mixtures=0), "moe_num_mixtures"),
    ("AttentionPoolingModel", dict(attention_heads=0), "attention_heads"),
    ("AttentionPoolingModel", dict(attention_scorer_size=1.5), "attention_scorer_size"),
    ("AttentionPoolingModel", dict(attention_hidden_size=0), "attention_hidden_size"),
    ("AttentionPoolingModel", dict(attention_drop_rate=1.0), "attention_drop_rate"),
    ("AttentionPoolingModel", dict(frame_dropout=-0.1), "frame_dropout"),
])
def test_bad_hparam_values_name_the_parameter(name, hparams, bad):
  with pytest.raises(ValueError, match=bad):
    build(name, **hparams)


@pytest.mark.parametrize("name", VLAD_NAMES)
def test_feature_dimension_smaller_than_rgb_size_is_an_error(name):
  x, n = videos([3], 3)
  with pytest.raises(ValueError, match="rgb_size"):
    build(name, rgb_size=D + 1)(x, num_frames=n)


def test_nextvlad_audio_groups_must_divide_the_audio_width():
  # rgb 8 splits into 4 groups, audio 3 cannot split into 2.
  x = np.ones((1, 3, 11), np.float32)
  with pytest.raises(ValueError, match="divisible by groups"):
    build("NeXtVladModel", groups=4, expansion=1)(x)


# --- attention pooling ------------------------------------------------------------------------


def test_hrnn_attention_pools_its_blocks_and_spreads_their_weights_over_real_frames():
  model = build("HierarchicalLstmModel", hrnn_block_frames=4, hrnn_pooling="attention",
                attention_scorer_size=5)
  x, n = videos([20, 9, 1], 24, seed=24, pad_value=7.0)
  out = model(x, num_frames=n)
  assert out["representation"].shape == (3, CELLS + 4 * CELLS)
  weights = out["frame_weights"].numpy()
  assert weights.shape == (3, 24)
  for b, count in enumerate(n):
    np.testing.assert_array_equal(weights[b, count:], 0.0)
    assert np.all(weights[b, :count] > 0)
    np.testing.assert_allclose(weights[b].sum(), 1.0, atol=1e-5)
    # One weight per block, shared by the block's real frames (video 1: 4 + 4 + 1 frames).
    for start in range(0, count, 4):
      block = weights[b, start:min(start + 4, count)]
      np.testing.assert_allclose(block, block[0], rtol=1e-6)
  # The pooled blocks hold each block's encoding: E[-state:] = sum_i a_i encoding_i.
  block_weights = weights.reshape(3, 6, 4).sum(axis=2)
  pooled = np.einsum("bn,bnf->bf", block_weights, out["intermediates"].numpy())
  np.testing.assert_allclose(out["representation"][:, CELLS:], pooled, atol=1e-5)


def test_hrnn_dropout_only_when_training():
  model = build("HierarchicalLstmModel", hrnn_drop_rate=0.5, hrnn_pooling="attention")
  x, n = videos([20, 9], 20, seed=25)
  assert_outputs_equal(model(x, num_frames=n), model(x, num_frames=n), atol=0)
  trained = [model(x, num_frames=n, training=True)["predictions"].numpy() for _ in range(2)]
  assert not np.allclose(trained[0], trained[1])


def test_attention_frame_weights_are_a_distribution_over_the_real_frames():
  model = build("AttentionPoolingModel")
  x, n = videos([20, 9, 1], 24, seed=20, pad_value=7.0)
  weights = model(x, num_frames=n)["frame_weights"].numpy()
  assert weights.shape == (3, 24)
  for b, count in enumerate(n):
    np.testing.assert_array_equal(weights[b, count:], 0.0)
    assert np.all(weights[b, :count] > 0)
    np.testing.assert_allclose(weights[b].sum(), 1.0, atol=1e-5)


def test_attention_pooling_ignores_frame_order_and_is_the_weighted_mean():
  model = build("AttentionPoolingModel", attention_heads=1)
  x, n = videos([15, 8], 15, seed=21)
  out = model(x, num_frames=n)
  shuffled = x.copy()
  rng = np.random.default_rng(22)
  for b, count in enumerate(n):
    shuffled[b, :count] = x[b, rng.permutation(count)]
  assert_outputs_equal(out, model(shuffled, num_frames=n))
  # One head: the pooled vector is sum_t a_t x_t of the normalised frames.
  frames = layers.l2_normalize_frames(x).numpy()
  pooled = np.einsum("bt,btd->bd", out["frame_weights"].numpy(), frames)
  np.testing.assert_allclose(model.hidden(pooled).numpy(), out["representation"], atol=1e-5)


def test_attention_frame_dropout_only_when_training_and_never_empty():
  model = build("AttentionPoolingModel", frame_dropout=0.5)
  x, n = videos([20, 9, 1], 20, seed=23)
  assert_outputs_equal(model(x, num_frames=n), model(x, num_frames=n), atol=0,
                       keys=("predictions", "representation", "frame_weights"))
  trained = model(x, num_frames=n, training=True)["frame_weights"].numpy()
  assert np.any(trained[0, :20] == 0)  # some real frames hidden
  np.testing.assert_allclose(trained.sum(axis=1), 1.0, atol=1e-5)  # at least one left
  np.testing.assert_allclose(trained[2, 0], 1.0, atol=1e-6)  # a one-frame video keeps it


def test_an_hrnn_student_has_the_authors_five_blocks():
  assert [student_block_frames(k) for k in (1, 4, 5, 6, 10, 30)] == [1, 1, 1, 1, 2, 6]
