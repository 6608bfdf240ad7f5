"""TensorBoard logs of a run folder, read back by a reader that is not the writer.

The event files are parsed here from the TFRecord framing (8-byte length, masked CRC-32C of the
length, data, masked CRC-32C of the data; CRCs recomputed by a table-driven CRC-32C written here)
and decoded as ``Event`` protos; TensorBoard's restart purge (a ``SessionLog.START`` at step s
drops earlier events at steps >= s) is applied as TensorBoard documents it, and checked against
TensorBoard's own ``EventAccumulator`` where tensorboard is installed.
"""

import json
import struct
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorboardX")
from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top

from jaxcnn.train import tensorboard as tb  # pylint: disable=g-import-not-at-top
from jaxcnn.train.recorder import Recorder  # pylint: disable=g-import-not-at-top

LABELS = ["learning_rate=0.1", "learning_rate=0.2", "learning_rate=0.4"]


# ---------------------------------------------------------------------------------------------
# An independent reader.


def _crc32c_table():
  table = []
  for n in range(256):
    c = n
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # Castagnoli, reflected
    table.append(c)
  return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  c = 0xFFFFFFFF
  for b in data:
    c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
  return c ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
  c = crc32c(data)
  return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_events(run_dir: Path) -> list:
  """Every Event of a run folder's event files, in TensorBoard's file order (by name)."""
  events = []
  for path in sorted(run_dir.glob("events.out.tfevents.*")):
    data, pos = path.read_bytes(), 0
    while pos < len(data):
      header = data[pos:pos + 8]
      (length,) = struct.unpack("<Q", header)
      (length_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
      assert length_crc == masked_crc(header), f"bad length CRC in {path}"
      body = data[pos + 12:pos + 12 + length]
      (body_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
      assert body_crc == masked_crc(body), f"bad data CRC in {path}"
      events.append(event_pb2.Event.FromString(body))
      pos += 16 + length
  return events


def view(run_dir: Path) -> dict[str, list]:
  """``{tag: [(step, value)]}`` as TensorBoard shows it: scalars as floats, histograms as their
  proto, text as a string; events at steps >= s are dropped at a restart at step s."""
  kept = []
  for e in read_events(run_dir):
    if e.HasField("session_log") and e.session_log.status == event_pb2.SessionLog.START:
      kept = [k for k in kept if k[0] < e.step]
    for v in e.summary.value:
      if v.HasField("simple_value"):
        kept.append((e.step, v.tag, v.simple_value))
      elif v.HasField("histo"):
        kept.append((e.step, v.tag, v.histo))
      elif v.HasField("tensor") and v.tensor.string_val:
        kept.append((e.step, v.tag, v.tensor.string_val[0].decode()))
  out: dict[str, list] = {}
  for step, tag, value in kept:
    out.setdefault(tag, []).append((step, value))
  return out


def test_reader_crc_matches_the_standard_check_value():
  assert crc32c(b"123456789") == 0xE3069283  # RFC 3720 (iSCSI) CRC-32C check value
  assert crc32c(b"") == 0


# ---------------------------------------------------------------------------------------------
# Recorder with fake values (no training).


def _records(workdir: Path) -> list[dict]:
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _fake_run(workdir, labels, epochs, *, steps_per_epoch=10, resume_step=None, config=None,
              offset=0.0, **kwargs):
  """Writes ``epochs`` epoch records and a progress update every 5 steps; values depend on the
  epoch, the model and ``offset`` so that every number written is different."""
  m = len(labels) if labels else 1
  rec = Recorder(workdir, title="fake", labels=labels, total_steps=100, resume_step=resume_step,
                 progress_bar=False, config=config, **kwargs)
  for epoch in epochs:
    for step in range((epoch - 1) * steps_per_epoch + 5, epoch * steps_per_epoch + 1, 5):
      rec.progress(step, 2.0 / step + np.arange(m) + offset, 0.01 * step + 0.1 * np.arange(m))
    step = epoch * steps_per_epoch
    values = {"learning_rate": 0.1 * 2.0 ** np.arange(m) / epoch,
              "train_loss": 1.0 / epoch + np.arange(m) + offset,
              "train_accuracy": 0.5 + 0.1 * epoch - 0.01 * np.arange(m),
              "val_loss": 1.5 / epoch + np.arange(m) + offset,
              "val_accuracy": 0.4 + 0.1 * epoch - 0.02 * np.arange(m)}
    rec.record(epoch, 5, step, values, {"step_time_s": 0.01 * epoch, "images_per_s": 1e4 * epoch})
  rec.close()
  return rec


def test_one_run_per_model_with_the_scalars_of_metrics_jsonl(tmp_path):
  _fake_run(tmp_path, LABELS, epochs=[1, 2, 3])
  records = _records(tmp_path)
  assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == LABELS
  for m, label in enumerate(LABELS):
    logs = view(tmp_path / "tb" / label)
    for key, tag in [("train_loss", "train/loss"), ("train_accuracy", "train/accuracy"),
                     ("val_loss", "val/loss"), ("val_accuracy", "val/accuracy"),
                     ("learning_rate", "learning_rate")]:
      assert logs[tag] == [(r["step"], np.float32(r[key + "_per_model"][m])) for r in records], tag
    for key in ("step_time_s", "images_per_s", "epoch"):
      assert logs[key] == [(r["step"], np.float32(r[key])) for r in records], key
    # The latest batch's values at every progress update.
    steps = list(range(5, 31, 5))
    assert logs["train/batch_loss"] == [(s, np.float32(2.0 / s + m)) for s in steps]
    assert logs["train/batch_accuracy"] == [(s, np.float32(0.01 * s + 0.1 * m)) for s in steps]


def test_one_model_writes_one_run_in_tb_itself(tmp_path):
  _fake_run(tmp_path, None, epochs=[1, 2])
  records = _records(tmp_path)
  assert [p.name for p in (tmp_path / "tb").iterdir() if p.is_dir()] == []
  logs = view(tmp_path / "tb")
  assert logs["val/accuracy"] == [(r["step"], np.float32(r["val_accuracy"])) for r in records]
  assert logs["learning_rate"] == [(10, np.float32(0.1)), (20, np.float32(0.05))]


def test_the_config_is_written_as_text(tmp_path):
  config = {"model": {"name": "simple_cnn", "act": "elu"}, "num_epochs": 3, "tensorboard": True}
  _fake_run(tmp_path, LABELS[:2], epochs=[1], config=config)
  for label in LABELS[:2]:
    ((step, text),) = view(tmp_path / "tb" / label)["config/text_summary"]
    head, body = text.split("\n\n", 1)
    assert step == 0 and head == f"model: {label}"
    assert json.loads("\n".join(line[4:] for line in body.splitlines())) == config


def _hparams(run_dir: Path) -> list[dict]:
  from tensorboardX.proto import plugin_hparams_pb2  # pylint: disable=g-import-not-at-top
  out = []
  for e in read_events(run_dir):
    for v in e.summary.value:
      if v.tag == "_hparams_/session_start_info":
        assert v.metadata.plugin_data.plugin_name == "hparams"
        data = plugin_hparams_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
        out.append({k: getattr(x, x.WhichOneof("kind"))
                    for k, x in data.session_start_info.hparams.items()})
  return out


def test_each_model_run_holds_its_hyperparameters_for_the_hparams_tab(tmp_path):
  from jaxcnn.train.config import get_config  # pylint: disable=g-import-not-at-top
  config = get_config()
  config.model.name, config.optimizer.weight_decay = "resnet20", 1e-4
  _fake_run(tmp_path, ["learning_rate=0.1,seed=1", "learning_rate=0.2,seed=2"], epochs=[1],
            config=config)
  for label, lr, seed in [("learning_rate=0.1,seed=1", 0.1, 1.0),
                          ("learning_rate=0.2,seed=2", 0.2, 2.0)]:
    (hp,) = _hparams(tmp_path / "tb" / label)
    assert hp["learning_rate"] == lr and hp["seed"] == seed, hp
    assert hp["model"] == "resnet20" and hp["weight_decay"] == 1e-4 and hp["dataset"] == "digits"
    assert hp["batch_size"] == config.batch_size and hp["augment"] == "()"
    text = view(tmp_path / "tb" / label)["config/text_summary"][0][1].split("\n\n", 1)[1]
    assert json.loads("\n".join(line[4:] for line in text.splitlines())) == json.loads(
        config.to_json())  # a ConfigDict, as fit() passes it
  # One model: the config's values; no config and no labels: nothing written.
  (tmp_path / "one").mkdir()
  _fake_run(tmp_path / "one", None, epochs=[1], config=config)
  assert _hparams(tmp_path / "one" / "tb")[0]["learning_rate"] == config.optimizer.learning_rate
  (tmp_path / "none").mkdir()
  _fake_run(tmp_path / "none", None, epochs=[1])
  assert _hparams(tmp_path / "none" / "tb") == []


def test_a_config_dict_with_tensorboard_false_writes_no_logs(tmp_path):
  _fake_run(tmp_path, None, epochs=[1], config={"tensorboard": False})
  assert not (tmp_path / "tb").exists()
  (tmp_path / "b").mkdir()
  _fake_run(tmp_path / "b", None, epochs=[1], tensorboard=False)
  assert not (tmp_path / "b" / "tb").exists()
  (tmp_path / "c").mkdir()  # and the default is on
  _fake_run(tmp_path / "c", None, epochs=[1], config={"seed": 0})
  assert (tmp_path / "c" / "tb").is_dir()


def test_without_tensorboardx_a_note_is_printed_and_metrics_are_written(tmp_path, monkeypatch,
                                                                          capsys):
  monkeypatch.setitem(sys.modules, "tensorboardX", None)  # makes the import fail
  _fake_run(tmp_path, None, epochs=[1])
  err = capsys.readouterr().err
  assert "no TensorBoard logs" in err and "pip install tensorboardX" in err, err
  assert not (tmp_path / "tb").exists() and len(_records(tmp_path)) == 1


def test_only_the_main_process_writes(tmp_path):
  _fake_run(tmp_path, LABELS, epochs=[1], is_main=False)
  assert not (tmp_path / "tb").exists()


def test_resume_purges_what_was_written_after_the_checkpoint(tmp_path):
  # The interrupted run reached epoch 3 (step 30); its checkpoint is step 20.
  _fake_run(tmp_path, LABELS[:2], epochs=[1, 2, 3], offset=100.0)
  _fake_run(tmp_path, LABELS[:2], epochs=[3, 4], resume_step=20)
  (tmp_path / "whole").mkdir()
  _fake_run(tmp_path / "whole", LABELS[:2], epochs=[1, 2, 3, 4])
  records = _records(tmp_path)
  assert [r["epoch"] for r in records] == [1, 2, 3, 4]
  for m, label in enumerate(LABELS[:2]):
    logs = view(tmp_path / "tb" / label)
    whole = view(tmp_path / "whole" / "tb" / label)
    # Epochs 1-2 of the first run (offset 100) are kept, its epoch 3 is replaced.
    assert logs["train/loss"] == [(r["step"], np.float32(r["train_loss_per_model"][m]))
                                  for r in records]
    assert [v for _, v in logs["train/loss"][:2]] == [np.float32(100 + 1 / e + m) for e in (1, 2)]
    assert logs["train/loss"][2:] == whole["train/loss"][2:]
    assert [s for s, _ in logs["train/batch_loss"]] == list(range(5, 41, 5))
    assert logs["train/batch_loss"][4:] == whole["train/batch_loss"][4:]
    assert len(list((tmp_path / "tb" / label).glob("events.out.tfevents.*"))) == 2


def test_tensorboard_itself_reads_the_purged_logs(tmp_path, monkeypatch):
  pytest.importorskip("tensorboard")
  # TensorBoard would import TensorFlow where it is installed; its stub reads event files as well.
  monkeypatch.setitem(sys.modules, "tensorboard.compat.notf", types.ModuleType("notf"))
  # pylint: disable-next=g-import-not-at-top
  from tensorboard.backend.event_processing import event_accumulator

  tensorflow_before = "tensorflow" in sys.modules
  _fake_run(tmp_path, LABELS[:2], epochs=[1, 2, 3], offset=100.0, config={"seed": 0})
  _fake_run(tmp_path, LABELS[:2], epochs=[3], resume_step=20, config={"seed": 0})
  records = _records(tmp_path)
  for m, label in enumerate(LABELS[:2]):
    acc = event_accumulator.EventAccumulator(str(tmp_path / "tb" / label),
                                             size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    assert [(e.step, np.float32(e.value)) for e in acc.Scalars("train/loss")] == [
        (r["step"], np.float32(r["train_loss_per_model"][m])) for r in records]
    assert [e.step for e in acc.Scalars("train/batch_loss")] == [5, 10, 15, 20, 25, 30]
    assert [e.step for e in acc.Tensors("config/text_summary")] == [0, 21]
  assert tensorflow_before or "tensorflow" not in sys.modules


def test_a_fresh_start_removes_earlier_logs(tmp_path):
  _fake_run(tmp_path, LABELS, epochs=[1, 2], offset=100.0)
  _fake_run(tmp_path, LABELS[:1] + ["seed=1"], epochs=[1])
  assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == sorted(["learning_rate=0.1",
                                                                        "seed=1"])
  logs = view(tmp_path / "tb" / "seed=1")
  assert logs["train/loss"] == [(10, np.float32(2.0))]


def test_layer_stats_weight_norms_and_histograms(tmp_path):
  rng = np.random.default_rng(0)
  params = {"Conv_0": {"kernel": rng.normal(size=(2, 3, 3, 1, 4)), "bias": rng.normal(size=(2, 4))},
            "Dense_0": {"kernel": rng.normal(size=(2, 16, 10))}}
  rec = Recorder(tmp_path, title="t", labels=LABELS[:2], total_steps=10, progress_bar=False)
  rec.layer_stats(7, params, {"activation_std": {"Activation_0": [0.5, 0.25]},
                              "dead": {"Activation_0": 0.0}})
  rec.close()
  for m, label in enumerate(LABELS[:2]):
    logs = view(tmp_path / "tb" / label)
    for layer, name in [("Conv_0", "kernel"), ("Conv_0", "bias"), ("Dense_0", "kernel")]:
      w = params[layer][name][m].ravel()
      assert logs[f"weight_norm/{layer}/{name}"] == [(7, np.float32(np.sqrt(np.sum(w ** 2))))]
      ((step, histo),) = logs[f"weights/{layer}/{name}"]
      assert step == 7 and histo.num == w.size and sum(histo.bucket) == w.size
      assert (histo.min, histo.max) == (w.min(), w.max())
      assert histo.sum == pytest.approx(w.sum()) and histo.sum_squares == pytest.approx(w @ w)
    assert logs["activation_std/Activation_0"] == [(7, np.float32([0.5, 0.25][m]))]
    assert logs["dead/Activation_0"] == [(7, 0.0)]


def test_bad_input_names_the_problem(tmp_path):
  with pytest.raises(ValueError, match="leading axis"):
    tb.weight_norms({"kernel": np.ones((3, 4))}, num_models=2)
  with pytest.raises(ValueError, match="one per model"):
    tb.per_model([1.0, 2.0], 3, "train_loss")
  with pytest.raises(ValueError, match="repeated run folders"):
    tb.TensorBoardLogs(tmp_path / "tb", labels=["a/b", "a_b"])
  assert tb.run_name("learning_rate=0.1,seed=1") == "learning_rate=0.1,seed=1"
  assert tb.tag("val_accuracy") == "val/accuracy" and tb.tag("learning_rate") == "learning_rate"


def test_network_layer_stats_are_diagnostics_network_stats_per_model():
  import jax  # pylint: disable=g-import-not-at-top
  from jaxcnn import diagnostics  # pylint: disable=g-import-not-at-top
  from jaxcnn.models import create_model  # pylint: disable=g-import-not-at-top

  model = create_model("simple_cnn_small", num_classes=3)
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 8, 8, 1))
  labels = np.arange(8) % 3
  stacked = jax.jit(jax.vmap(lambda k: model.init(k, x, train=False)))(
      jax.random.split(jax.random.PRNGKey(1)))
  per = [jax.tree.map(lambda a, m=m: a[m], stacked) for m in range(2)]
  stats = tb.network_layer_stats(model, stacked, x, labels, num_models=2)
  for m in range(2):
    ref = diagnostics.network_stats(model, per[m], x, labels)
    assert list(stats["activation_std"]) == ref["activation"] and ref["activation"]
    assert list(stats["gradient_norm"]) == ref["weight"] and ref["weight"]
    np.testing.assert_allclose([v[m] for v in stats["activation_std"].values()], ref["act_std"],
                               rtol=1e-6)
    np.testing.assert_allclose([v[m] for v in stats["gradient_norm"].values()], ref["grad_norm"],
                               rtol=1e-6)


def test_the_writer_does_not_import_tensorflow(tmp_path):
  code = ("import sys, numpy as np\n"
          "from jaxcnn.train.recorder import Recorder\n"
          f"r = Recorder({str(tmp_path)!r}, title='t', labels=None, total_steps=1, "
          "progress_bar=False, config={'a': 1})\n"
          "r.record(1, 1, 1, {'train_loss': 1.0, 'train_accuracy': 0.5}); r.close()\n"
          "assert (r.workdir / 'tb').is_dir()\n"
          "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'torch')))\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.splitlines()[-1] == "[]", out.stdout + out.stderr


# ---------------------------------------------------------------------------------------------
# Through fit(): the Recorder writes the logs without anything else asking.


@pytest.fixture(scope="module")
def digits():
  from jaxcnn.data import datasets  # pylint: disable=g-import-not-at-top
  return {split: datasets.load("digits", split) for split in ("train", "test")}


FIT_LABELS = ["learning_rate=0.05", "learning_rate=0.1"]


def _fit_config(**changes):
  from jaxcnn.train.config import get_config  # pylint: disable=g-import-not-at-top
  c = get_config()
  c.model.name = "simple_cnn_small"
  c.num_epochs, c.steps_per_epoch, c.batch_size, c.eval_batch_size = 3, 3, 32, 500
  c.log_every_steps, c.progress_bar = 1, False
  c.sweep.learning_rate = (0.05, 0.1)
  c.update(changes)
  return c


def test_fit_writes_one_run_per_model_with_the_records_of_metrics_jsonl(tmp_path, digits):
  from jaxcnn.train.loop import fit  # pylint: disable=g-import-not-at-top

  fit(_fit_config(), tmp_path, data=digits)
  records = _records(tmp_path)
  assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == FIT_LABELS
  for m, label in enumerate(FIT_LABELS):
    logs = view(tmp_path / "tb" / label)
    for key in ("train_loss", "val_accuracy", "test_loss", "learning_rate"):
      assert logs[tb.tag(key)] == [(r["step"], np.float32(r[key + "_per_model"][m]))
                                   for r in records], key
    assert [s for s, _ in logs["train/batch_loss"]] == list(range(1, 10))


@pytest.mark.slow  # three fits: 18 s at load 10, 69 s at load 12
def test_fit_killed_and_resumed_logs_equal_an_uninterrupted_run(tmp_path, digits):
  from jaxcnn.train.loop import fit  # pylint: disable=g-import-not-at-top

  fit(_fit_config(), tmp_path / "whole", data=digits)
  # Killed at step 7 (no checkpoint of its own), the checkpoint at step 6, resumed.
  cut = fit(_fit_config(checkpoint_every_steps=3, stop_after_steps=7), tmp_path / "cut",
            data=digits)
  assert cut["interrupted"] and cut["steps"] == 7
  fit(_fit_config(checkpoint_every_steps=3), tmp_path / "cut", resume=True, data=digits)
  for label in FIT_LABELS:
    whole, resumed = (view(tmp_path / run / "tb" / label) for run in ("whole", "cut"))
    for name in ("train/batch_loss", "train/loss", "val/loss", "learning_rate"):
      assert [s for s, _ in resumed[name]] == [s for s, _ in whole[name]], name
      np.testing.assert_allclose([v for _, v in resumed[name]], [v for _, v in whole[name]],
                                 rtol=1e-5, err_msg=name)
