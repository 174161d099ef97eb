"""Fault injection at the edges: eval, inference and their outputs and bundles.

Each test breaks something a user or a neighbouring process can break (a file in the way, a
killed run, a trainer deleting checkpoints, a damaged or hostile bundle, a path without
credentials, a bad flag value) and checks that nothing is lost and nothing is silent. One
tiny model is trained once per session; the command lines run in two Pythons (one per
script), each running all of its cases in turn (see _DRIVER).
"""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, write_records
from yt8m import eval_lib, inference_lib, run_config, submission, train_lib

NUM_CLASSES = 8
DIM = 16
GS = "gs://yt8m-test-no-such-bucket"  # no credentials here: every access fails


def video_example(index: int, label: int) -> bytes:
  ex = tf.train.Example()
  ex.features.feature["id"].bytes_list.value.append(f"v{index}".encode())
  ex.features.feature["labels"].int64_list.value.append(label)
  features = np.zeros(DIM, np.float32)
  features[label] = 1.0
  ex.features.feature["mean_rgb"].float_list.value.extend(features)
  return ex.SerializeToString()


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
  """A LogisticModel trained for 2 steps on 16 synthetic videos: (train_dir, data file)."""
  root = tmp_path_factory.mktemp("edges")
  data = write_records(root / "videos.tfrecord", [video_example(i, i % 4) for i in range(16)])
  run = run_config.RunConfig(model="LogisticModel", feature_names=("mean_rgb",),
                             feature_sizes=(DIM,), frame_features=False,
                             num_classes=NUM_CLASSES)
  train_dir = str(root / "run")
  train_lib.train(run, [data], train_lib.TrainConfig(train_dir=train_dir, batch_size=8,
                                                     max_steps=2, checkpoint_steps=2))
  return train_dir, data


def copy_run(train_dir: str, destination) -> str:
  """A private copy of the run (tests damage it), without TensorBoard events."""
  shutil.copytree(train_dir, destination, ignore=shutil.ignore_patterns("events.*", "eval"))
  return str(destination)


def data_file(train_dir: str) -> str:
  prefix = tf.train.latest_checkpoint(train_dir)
  return tf.io.gfile.glob(prefix + ".data-*")[0]


def damage(train_dir: str) -> None:
  """Flips every byte of the latest checkpoint's data file (its index stays intact)."""
  path = data_file(train_dir)
  with open(path, "rb") as f:
    raw = f.read()
  with open(path, "wb") as f:
    f.write(bytes(b ^ 0xFF for b in raw))


def tgz(path, members) -> str:
  """A gzip tar of (TarInfo or name, bytes) members."""
  with tarfile.open(path, "w:gz") as tar:
    for info, data in members:
      info = tarfile.TarInfo(info) if isinstance(info, str) else info
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return str(path)


def bundle_members(bundle: str) -> list[tuple[str, bytes]]:
  with tarfile.open(bundle, "r:gz") as tar:
    return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


@pytest.fixture(scope="session")
def bundle(trained, tmp_path_factory):
  train_dir, _ = trained
  path = str(tmp_path_factory.mktemp("bundle") / "model.tgz")
  inference_lib.write_model_tgz(train_dir, tf.train.latest_checkpoint(train_dir), path)
  return path


# ---------------------------------------------------------------------------- the bundle


def test_output_model_tgz_never_replaces_a_file_yt8m_did_not_write(trained, tmp_path):
  train_dir, _ = trained
  checkpoint = tf.train.latest_checkpoint(train_dir)
  notes = tmp_path / "notes.tgz"
  notes.write_text("my notes")
  foreign = tgz(tmp_path / "photos.tgz", [("photo.jpg", b"\xff\xd8 a photo")])
  foreign_bytes = open(foreign, "rb").read()
  for path in (str(notes), foreign):
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
      inference_lib.write_model_tgz(train_dir, checkpoint, path)
  assert notes.read_text() == "my notes" and open(foreign, "rb").read() == foreign_bytes
  # An earlier bundle is ours: it is replaced (atomically: no temporary is left).
  ours = str(tmp_path / "model.tgz")
  inference_lib.write_model_tgz(train_dir, checkpoint, ours)
  inference_lib.write_model_tgz(train_dir, checkpoint, ours)
  assert sorted(os.listdir(tmp_path)) == ["model.tgz", "notes.tgz", "photos.tgz"]
  assert [name for name, _ in bundle_members(ours)][0] == run_config.MODEL_FLAGS_FILE


def test_a_failed_bundle_write_leaves_nothing(trained, tmp_path):
  train_dir, _ = trained
  broken = copy_run(train_dir, tmp_path / "run")
  os.remove(data_file(broken))  # the bundle cannot be completed
  out = tmp_path / "out" / "model.tgz"
  with pytest.raises(inference_lib.BundleError, match=r"model\.ckpt-2 is incomplete"):
    inference_lib.write_model_tgz(broken, tf.train.latest_checkpoint(broken), str(out))
  assert not out.parent.exists() or os.listdir(out.parent) == []


def test_stale_temporaries_of_dead_yt8m_writers_are_removed(tmp_path):
  dead = subprocess.Popen(["true"])
  dead.wait()
  out = tmp_path / "pred.csv"
  stale = tmp_path / f"pred.csv.tmp-{dead.pid}"  # a killed inference's partial file
  alive = tmp_path / f"pred.csv.tmp-{os.getppid()}"  # a writer that is still running
  users = [tmp_path / "pred.csv.tmp-notes", tmp_path / f"pred.csv.tmp-{dead.pid}.bak",
           tmp_path / f"other.csv.tmp-{dead.pid}", tmp_path / "pred.csv.tmp-0",
           tmp_path / f"pred.csv.tmp-{2**70}"]
  for path in [stale, alive, *users]:
    path.write_text("VideoId,LabelConfidencePairs\nv0,1 0.5\n")
  submission.write_csv(str(out), [("v1", [2], [0.25])])
  assert out.read_text() == "VideoId,LabelConfidencePairs\nv1,2 0.25\n"
  assert not stale.exists()
  assert alive.exists() and all(path.exists() for path in users)

  def failing_rows():
    yield "v2", [1], [0.5]
    raise RuntimeError("the reader failed")

  with pytest.raises(RuntimeError):
    submission.write_csv(str(tmp_path / "failed.csv"), failing_rows())
  assert not [p for p in os.listdir(tmp_path) if p.startswith("failed.csv")]


@pytest.mark.slow
def test_a_terminated_inference_removes_its_temporary(trained, tmp_path):
  train_dir, _ = trained
  data = write_records(tmp_path / "many.tfrecord",
                       [video_example(i, i % 4) for i in range(3000)])
  out = tmp_path / "pred.csv"
  proc = subprocess.Popen(
      [sys.executable, str(REPO / "inference.py"), f"--train_dir={train_dir}",
       f"--input_data_pattern={data}", f"--output_file={out}", "--batch_size=1"],
      stderr=subprocess.PIPE, text=True, cwd=REPO)
  seen = ""
  while "num examples processed: 20 " not in seen:
    line = proc.stderr.readline()
    assert line, seen[-3000:]
    seen += line
  proc.terminate()  # SIGTERM, as kill, timeout and job schedulers send
  rest = proc.communicate(timeout=120)[1]
  assert proc.returncode == 128 + 15, rest[-3000:]
  assert os.listdir(tmp_path) == ["many.tfrecord"], rest[-3000:]


def test_each_bundle_is_extracted_into_a_fresh_directory(bundle, tmp_path):
  shared = tmp_path / "untar"
  first = inference_lib.extract_model_tgz(bundle, str(shared))
  second = inference_lib.extract_model_tgz(bundle, str(shared))
  assert first != second and os.path.dirname(first) == str(shared)
  assert tf.train.latest_checkpoint(first) and tf.train.latest_checkpoint(second)
  # A bundle without a `checkpoint` index used to pick up the previous bundle's model.
  flags_only = [(n, d) for n, d in bundle_members(bundle) if n != "checkpoint"]
  incomplete = tgz(tmp_path / "incomplete.tgz", flags_only)
  with pytest.raises(inference_lib.BundleError, match="incomplete.tgz.*checkpoint"):
    inference_lib.extract_model_tgz(incomplete, str(shared))
  # Nor a checkpoint outside the bundle, named by its index.
  elsewhere = tgz(tmp_path / "elsewhere.tgz", flags_only + [
      ("checkpoint", f'model_checkpoint_path: "{first}/model.ckpt-2"\n'.encode())])
  with pytest.raises(inference_lib.BundleError, match="elsewhere.tgz.*does not hold"):
    inference_lib.extract_model_tgz(elsewhere, str(shared))
  assert sorted(os.listdir(shared)) == sorted([os.path.basename(first),
                                               os.path.basename(second)])
  # No --untar_model_dir: a private temporary directory, not a path shared with others.
  private = inference_lib.extract_model_tgz(bundle, "")
  assert private not in (first, second) and tf.train.latest_checkpoint(private)
  assert (os.stat(private).st_mode & 0o077) == 0


@pytest.mark.parametrize("limit", ["bytes", "members"])
def test_bundle_extraction_is_capped_and_rejections_leave_nothing(bundle, tmp_path, limit):
  assert inference_lib.MAX_BUNDLE_BYTES >= 2**30 and inference_lib.MAX_BUNDLE_MEMBERS >= 16
  members = bundle_members(bundle)
  total = sum(len(d) for _, d in members)
  untar = tmp_path / "untar"
  caps = ({"max_bytes": total - 1} if limit == "bytes" else
          {"max_members": len(members) - 1})
  with pytest.raises(inference_lib.BundleError, match="model.tgz"):
    inference_lib.extract_model_tgz(bundle, str(untar), **caps)
  assert os.listdir(untar) == []
  exact = {"max_bytes": total} if limit == "bytes" else {"max_members": len(members)}
  assert tf.train.latest_checkpoint(inference_lib.extract_model_tgz(bundle, str(untar), **exact))


def test_a_small_bundle_that_unpacks_huge_is_refused(tmp_path):
  # 64 MiB of zeros compress to ~64 KiB: refused by the size in its header, before writing.
  bomb = tmp_path / "bomb.tgz"
  with tarfile.open(bomb, "w:gz") as tar:
    info = tarfile.TarInfo(run_config.MODEL_FLAGS_FILE)
    info.size = 64 * 2**20
    tar.addfile(info, io.BytesIO(bytes(info.size)))
  assert bomb.stat().st_size < 2**20
  untar = tmp_path / "untar"
  with pytest.raises(inference_lib.BundleError, match="bomb.tgz.*MiB"):
    inference_lib.extract_model_tgz(str(bomb), str(untar), max_bytes=2**20)
  assert os.listdir(untar) == []


def link(name: str, kind: bytes, target: str) -> tarfile.TarInfo:
  info = tarfile.TarInfo(name)
  info.type, info.linkname = kind, target
  return info


@pytest.mark.parametrize("member", [
    "../escaped", "/tmp/absolute", "sub/model_flags.json", "..",
    link("checkpoint", tarfile.SYMTYPE, "/etc/passwd"),
    link("checkpoint", tarfile.LNKTYPE, "model_flags.json"), link("fifo", tarfile.FIFOTYPE, "")])
def test_a_bundle_member_that_is_not_a_plain_root_file_is_refused(bundle, tmp_path, member):
  hostile = tgz(tmp_path / "hostile.tgz", bundle_members(bundle) + [(member, b"")])
  name = member if isinstance(member, str) else member.name
  untar = tmp_path / "untar"
  with pytest.raises(inference_lib.BundleError, match=f"hostile.tgz: member '{re.escape(name)}'"):
    inference_lib.extract_model_tgz(hostile, str(untar))
  assert os.listdir(untar) == [] and not (tmp_path / "escaped").exists()


# ----------------------------------------------------------------------------- eval watch


@pytest.mark.parametrize("run_once", [False, True])
def test_eval_skips_a_checkpoint_the_trainer_deleted_before_it_was_read(
    trained, tmp_path, monkeypatch, run_once):
  train_dir, data = trained
  run_dir = copy_run(train_dir, tmp_path / "run")
  real_load = eval_lib.load_model
  calls = []

  def trainer_moves_on_then_load(directory, path=None, run=None):
    # What --keep_checkpoints=1 does between eval's look and its read: the next checkpoint
    # replaces the one eval was about to read.
    if not calls:
      step = eval_lib.checkpoint_step(path)
      for name in os.listdir(directory):
        if name.startswith(f"model.ckpt-{step}."):
          os.rename(os.path.join(directory, name),
                    os.path.join(directory, name.replace(f"-{step}.", f"-{step + 1}.")))
      with open(os.path.join(directory, "checkpoint"), "w") as f:
        f.write(f'model_checkpoint_path: "model.ckpt-{step + 1}"\n')
    calls.append(path)
    return real_load(directory, path, run)

  monkeypatch.setattr(eval_lib, "load_model", trainer_moves_on_then_load)
  results = eval_lib.evaluation_loop(run_dir, [data], batch_size=8, top_k=3,
                                     run_once=run_once, interval_secs=0.05, timeout_secs=0.3)
  assert [r["global_step"] for r in results] == [3]
  assert [eval_lib.checkpoint_step(p) for p in calls] == [2, 3]


def test_a_damaged_checkpoint_is_one_error_naming_it(trained, tmp_path):
  broken = copy_run(trained[0], tmp_path / "run")
  damage(broken)
  with pytest.raises(eval_lib.EvalError, match=r"model\.ckpt-2.*damaged"):
    eval_lib.load_model(broken)
  with open(data_file(broken), "r+b") as f:
    f.truncate(10)
  with pytest.raises(eval_lib.EvalError, match=r"model\.ckpt-2.*damaged"):
    eval_lib.load_model(broken)


def test_confidences_outside_0_1_are_warned_about(tmp_path):
  path = tmp_path / "scored.csv"
  path.write_text("VideoId,LabelConfidencePairs\nv0,1 0.5\nv1,2 1.7 3 0.2\nv2,1 -0.1\n")
  sub = submission.read_csv(str(path), NUM_CLASSES)
  warning = submission.confidence_warning(str(path), sub)
  assert str(path) in warning and "2 row(s)" in warning and "'v1'" in warning
  path.write_text("VideoId,LabelConfidencePairs\nv0,1 0.5\nv1,2 1 3 0\n")
  assert submission.confidence_warning(str(path), submission.read_csv(str(path), 8)) is None


# ------------------------------------------------------------------------- command lines

_DRIVER = r"""
import importlib, json, logging, sys, traceback
from absl import flags
from absl import logging as absl_logging
logging.basicConfig(level=logging.INFO)
script, cases = sys.argv[1], json.loads(sys.argv[2])
module = importlib.import_module(sys.argv[3])  # the command's module (the script is a shim)
results = []
for args in cases:
  print("@@case", file=sys.stderr, flush=True)
  flags.FLAGS.unparse_flags()
  try:
    argv = flags.FLAGS([script] + args)
    absl_logging.set_verbosity(absl_logging.INFO)  # progress lines, as app.run shows them
    module.main(argv)
    results.append({"code": 0, "message": ""})
  except SystemExit as e:
    code = e.code
    results.append({"code": 1 if isinstance(code, str) else (code or 0),
                    "message": code if isinstance(code, str) else ""})
  except BaseException as e:
    results.append({"code": "traceback", "message": traceback.format_exc()})
print(json.dumps(results))
"""


def run_cases(script: str, cases: dict) -> dict:
  """Runs script's main() once per argument list, in one Python; returns, per case name,
  (exit code or "traceback", the exit message, what the case logged)."""
  module = {"eval.py": "yt8m.cli.eval", "inference.py": "yt8m.cli.inference",
            "export_model.py": "yt8m.cli.export"}[script]
  proc = subprocess.run([sys.executable, "-c", _DRIVER, str(REPO / script),
                         json.dumps(list(cases.values())), module], capture_output=True,
                        text=True, cwd=REPO, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads(proc.stdout.strip().splitlines()[-1])
  logs = proc.stderr.split("@@case\n")[1:]
  return {name: (r["code"], r["message"], log)
          for name, r, log in zip(cases, results, logs, strict=True)}


@pytest.fixture(scope="module")
def cli(trained, bundle, tmp_path_factory):
  """Every command-line case of this file, run once: {script: {case: result}}."""
  train_dir, data = trained
  root = tmp_path_factory.mktemp("cli")
  damaged = copy_run(train_dir, root / "damaged")
  damage(damaged)
  symlink = tarfile.TarInfo("model.ckpt-2.index")
  symlink.type, symlink.linkname = tarfile.SYMTYPE, "/etc/passwd"
  hostile = tgz(root / "hostile.tgz", [(n, d) for n, d in bundle_members(bundle)
                                       if n != "model.ckpt-2.index"] + [(symlink, b"")])
  # ".." is a plain file at the root by its header; the `data` filter refuses it.
  outside = tgz(root / "outside.tgz", bundle_members(bundle) + [("..", b"x")])
  (root / "a_directory").mkdir()
  scored = root / "scored.csv"
  scored.write_text("VideoId,LabelConfidencePairs\n" +
                    "".join(f"v{i},{i % 4} {1.5 if i == 3 else 0.5}\n" for i in range(16)))
  model = [f"--train_dir={train_dir}"]
  predict = model + [f"--input_data_pattern={data}"]
  out = f"--output_file={root}/pred.csv"
  inference = {
      "gs_train_dir": [f"--train_dir={GS}/run", f"--input_data_pattern={data}", out],
      "gs_data": model + [f"--input_data_pattern={GS}/test*.tfrecord", out],
      "gs_output_file": predict + [f"--output_file={GS}/pred.csv"],
      "gs_output_model_tgz": model + [f"--output_model_tgz={GS}/model.tgz"],
      "gs_input_model_tgz": [f"--input_model_tgz={GS}/model.tgz", f"--input_data_pattern={data}",
                             out],
      "directory_output_file": predict + [f"--output_file={root}/a_directory"],
      "tgz_into_missing_directory": model + [f"--output_model_tgz={root}/new/dir/model.tgz"],
      "damaged_checkpoint": [f"--train_dir={damaged}", f"--input_data_pattern={data}", out],
      "symlink_member": [f"--input_model_tgz={hostile}", f"--input_data_pattern={data}", out,
                         f"--untar_model_dir={root}/untar"],
      "outside_member": [f"--input_model_tgz={outside}", f"--input_data_pattern={data}", out,
                         f"--untar_model_dir={root}/untar"],
      "bundle_default_untar": [f"--input_model_tgz={bundle}", f"--input_data_pattern={data}",
                               f"--output_file={root}/from_bundle.csv"],
      "top_k_0": predict + [out, "--top_k=0"],
      "top_k_negative": predict + [out, "--top_k=-1"],
  }
  evaluate = {
      "gs_train_dir": [f"--train_dir={GS}/run", f"--eval_data_pattern={data}", "--run_once"],
      "gs_data": model + [f"--eval_data_pattern={GS}/validate*.tfrecord", "--run_once"],
      "gs_metrics_json": model + [f"--eval_data_pattern={data}", "--run_once",
                                  f"--metrics_json={GS}/m.json"],
      "directory_metrics_json": model + [f"--eval_data_pattern={data}", "--run_once",
                                         f"--metrics_json={root}/a_directory"],
      "damaged_checkpoint": [f"--train_dir={damaged}", f"--eval_data_pattern={data}",
                             "--run_once"],
      "top_k_0": model + [f"--eval_data_pattern={data}", "--run_once", "--top_k=0"],
      "top_k_negative": model + [f"--eval_data_pattern={data}", "--run_once", "--top_k=-1"],
      "confidence_above_1": [f"--submission_file={scored}", f"--eval_data_pattern={data}",
                             f"--num_classes={NUM_CLASSES}"],
  }
  results = {"inference.py": run_cases("inference.py", inference),
             "eval.py": run_cases("eval.py", evaluate)}
  results["root"] = root
  return results


def assert_one_line(result, *names):
  code, message, _ = result
  assert code not in (0, "traceback"), message[-3000:]
  assert len(message.splitlines()) == 1, message
  assert message.split(": error: ")[0] in ("inference.py", "eval.py"), message
  for name in names:
    assert name in message, message


@pytest.mark.parametrize("script,case,names", [
    ("inference.py", "gs_data", [f"{GS}/test*.tfrecord", "credentials"]),
    ("inference.py", "gs_output_file", [f"{GS}/pred.csv", "credentials"]),
    ("inference.py", "gs_output_model_tgz", [f"{GS}/model.tgz", "credentials"]),
    ("inference.py", "gs_input_model_tgz", [f"{GS}/model.tgz", "credentials"]),
    ("inference.py", "gs_train_dir", [f"{GS}/run", "credentials"]),
    ("eval.py", "gs_train_dir", [f"{GS}/run", "credentials"]),
    ("eval.py", "gs_data", [f"{GS}/validate*.tfrecord", "credentials"]),
    ("eval.py", "gs_metrics_json", [f"{GS}/m.json", "credentials"]),
])
def test_gs_paths_without_credentials_are_one_line(cli, script, case, names):
  assert_one_line(cli[script][case], *names)


def test_a_directory_as_output_is_one_line(cli):
  root = cli["root"]
  assert_one_line(cli["inference.py"]["directory_output_file"], f"{root}/a_directory",
                  "is a directory")
  assert_one_line(cli["eval.py"]["directory_metrics_json"], f"{root}/a_directory",
                  "is a directory")
  assert os.listdir(root / "a_directory") == []
  # Found before the work whose result it would lose.
  assert "restoring variables" not in cli["inference.py"]["directory_output_file"][2]
  assert "Loading checkpoint" not in cli["eval.py"]["directory_metrics_json"][2]
  assert "restoring variables" in cli["inference.py"]["tgz_into_missing_directory"][2]


def test_output_model_tgz_into_a_missing_directory_is_created(cli):
  code, message, _ = cli["inference.py"]["tgz_into_missing_directory"]
  assert code == 0, message
  bundle = cli["root"] / "new" / "dir" / "model.tgz"
  assert os.listdir(bundle.parent) == ["model.tgz"]
  assert [n for n, _ in bundle_members(str(bundle))][0] == run_config.MODEL_FLAGS_FILE


def test_the_default_extraction_directory_is_removed_at_exit(cli):
  code, message, log = cli["inference.py"]["bundle_default_untar"]
  assert code == 0, message
  lines = [line for line in log.splitlines() if "extracted" in line and " into " in line]
  assert len(lines) == 1, log[-3000:]
  extracted = lines[0].rsplit(" into ", 1)[1].strip()
  assert os.path.basename(extracted).startswith("yt8m-model-model-")
  assert not os.path.exists(extracted)  # the driver's Python has exited
  assert len((cli["root"] / "from_bundle.csv").read_text().splitlines()) == 17


@pytest.mark.parametrize("script", ["inference.py", "eval.py"])
def test_a_damaged_checkpoint_is_one_line(cli, script):
  assert_one_line(cli[script]["damaged_checkpoint"], "model.ckpt-2", "damaged")


@pytest.mark.parametrize("case,names", [("symlink_member", ["hostile.tgz", "model.ckpt-2.index"]),
                                        ("outside_member", ["outside.tgz", "'..'"])])
def test_a_rejected_bundle_member_is_one_line_and_leaves_nothing(cli, case, names):
  assert_one_line(cli["inference.py"][case], *names)
  assert os.listdir(cli["root"] / "untar") == []


@pytest.mark.parametrize("script", ["inference.py", "eval.py"])
@pytest.mark.parametrize("case,value", [("top_k_0", "0"), ("top_k_negative", "-1")])
def test_top_k_below_1_is_one_line(cli, script, case, value):
  assert_one_line(cli[script][case], f"--top_k={value}", "at least 1")
  assert not (cli["root"] / "pred.csv").exists()


def test_scored_confidences_outside_0_1_are_warned_about(cli):
  code, message, log = cli["eval.py"]["confidence_above_1"]
  assert code == 0, message
  warnings = [line for line in log.splitlines() if "outside [0, 1]" in line]
  assert len(warnings) == 1 and "scored.csv" in warnings[0] and "'v3'" in warnings[0]
