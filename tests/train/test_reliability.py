"""No silent wrong runs, nothing lost: labels beyond the data set's default, bad config values,
bad workdirs, Ctrl-C / SIGTERM, killed and resumed runs, checkpoints by time, damaged or
mismatched checkpoints and the NaN stop with its advice.

Two runs are shared (module fixtures): an uninterrupted one and one killed at step 20; tests that
resume, damage or mismatch the killed run work on a copy of its folder."""

import re
import shutil
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.data import datasets
from jaxcnn.models import create_model
from jaxcnn.train import checkpoint, cli, loop
from jaxcnn.train.optim import make_optimizer, make_schedule
from jaxcnn.train.population import Population
from jaxcnn.train.state import create_train_state

from fit_helpers import records as _records  # tests/train/fit_helpers.py
from fit_helpers import small_config as _config


@pytest.fixture(scope="module")
def digits():
  return {split: datasets.load("digits", split) for split in ("train", "test")}


@pytest.fixture(scope="module")
def full(digits, tmp_path_factory):
  """An uninterrupted run of the default test config: its results and its records."""
  workdir = tmp_path_factory.mktemp("full")
  return loop.fit(_config(), workdir, data=digits), _records(workdir)


@pytest.fixture(scope="module")
def cut(digits, tmp_path_factory):
  """A run killed at step 20 (epoch 2, step 9 of 11), checkpointed every 7 steps: its result and
  its folder (leave it as it is: copy it with :func:`_copy`)."""
  workdir = tmp_path_factory.mktemp("cut") / "run"
  return loop.fit(_config(checkpoint_every_steps=7, stop_after_steps=20), workdir,
                  data=digits), workdir


def _copy(cut, tmp_path):
  """A fresh copy of the killed run's folder."""
  return shutil.copytree(cut[1], tmp_path / "cut")


def _write_npz(folder, labels_train, labels_test, seed=0):
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True, exist_ok=True)
  for split, labels in (("train", labels_train), ("test", labels_test)):
    images = rng.integers(0, 256, (len(labels), 8, 8), dtype=np.uint8)
    np.savez(folder / f"{split}.npz", images=images, labels=np.asarray(labels))


# 1. Own data with more classes than its name's default.

def test_own_npz_data_with_50_classes_under_the_default_name_gets_a_50_class_head(tmp_path):
  _write_npz(tmp_path / "data", np.arange(500) % 50, np.arange(100) % 50)
  s = loop.setup(_config(data_dir=str(tmp_path / "data"), val_size=0))  # dataset stays "digits"
  assert s.num_classes == 50
  variables = jax.eval_shape(lambda x: s.model.init(jax.random.PRNGKey(0), x, train=False),
                             jnp.zeros((1, 8, 8, 1)))
  head = [x.shape for x in jax.tree.leaves(variables["params"])][-1]
  assert head[-1] == 50, head


@pytest.mark.parametrize("labels,says", [
    (np.r_[np.arange(9), 10_000_000], "only 10 distinct values"),
    (np.r_[np.arange(9), -1], "labels must be >= 0"),
])
def test_sparse_or_negative_labels_are_an_error(tmp_path, labels, says):
  _write_npz(tmp_path / "data", np.tile(labels, 10), labels)
  with pytest.raises(ValueError, match=says):
    loop.setup(_config(data_dir=str(tmp_path / "data"), val_size=0))


# 6, 7. Bad config values: one clear error, before any data is loaded.

@pytest.mark.parametrize("changes,says", [
    ({"num_epochs": 0}, r"num_epochs=0: must be an integer >= 1"),
    ({"batch_size": -3}, r"batch_size=-3"),
    ({"batch_size": 0}, r"batch_size=0"),
    ({"eval_batch_size": 0}, r"eval_batch_size=0"),
    ({"dtype": "float8"}, r"dtype='float8': must be one of float32, bfloat16"),
    ({"optimizer.learning_rate": -0.1}, r"learning_rate .*finite and >= 0"),
    ({"optimizer.learning_rate": float("nan")}, r"learning_rate .*finite"),
    ({"optimizer.name": "adamx"}, r"unknown optimizer; known: sgd, adam, adamw"),
    ({"schedule.name": "cosin"}, r"unknown schedule"),
    ({"model.name": "resnt20"}, r"resnt20.*resnet20"),
    ({"model.act": "elu(beta=2)"}, r"beta"),
    ({"model.act": "elux"}, r"elux"),
    ({"model.depth": 3}, r"depth"),
    ({"preprocessing": "zca2"}, r"zca2"),
    ({"preprocessing": "pca(q=3)"}, r"pca.*keyword"),
    ({"augment": ("crop(pad=4)",)}, r"pad"),
    ({"label_smoothing": 1.5}, r"label_smoothing"),
    ({"val_size": 1.5}, r"val_size=1.5: must be a fraction in \[0, 1\) or a whole number"),
    ({"schedule.warmup_epochs": 3.0}, r"warmup_epochs=3.0 must be shorter"),
    ({"lookahead.every": -5}, r"lookahead.every=-5: must be an integer >= 0"),
    ({"lookahead.every": 5, "lookahead.base": 1.5}, r"config.lookahead: .*base"),
])
def test_bad_config_values_fail_early_with_one_clear_line(tmp_path, changes, says):
  with pytest.raises(ValueError, match=says) as info:
    loop.fit(_config(**changes), tmp_path / "run", data={"train": {}, "test": {}})  # no data read
  assert "\n" not in str(info.value)
  assert not (tmp_path / "run").exists()


def test_a_zero_learning_rate_warns(capsys):
  loop.check_config(_config(**{"optimizer.learning_rate": 0.0}))
  assert "learning_rate=0: the weights will not change" in capsys.readouterr().err


def test_cli_bad_values_print_one_line_without_a_traceback(tmp_path, capsys):
  syntax = tmp_path / "broken.py"
  syntax.write_text("def get_config(:\n  pass\n")
  afile = tmp_path / "afile"
  afile.write_text("x")
  for argv, says in (
      (["--config.model.name=resnt20"], "did you mean"),
      (["--config.modle.name=x"], "unknown config field 'modle.name'"),
      (["--config.batch_size=0"], "batch_size=0"),
      (["--config", str(syntax)], "syntax error in the config file"),
      (["--workdir", str(afile)], "is a file, not a folder"),
      (["--workdir", str(afile / "run")], "not a folder"),
  ):
    if "--workdir" not in argv:
      argv = [*argv, "--workdir", str(tmp_path / "run")]
    status = cli.main([*argv, "--config.progress_bar=False"])
    err = capsys.readouterr().err
    assert status in (1, 2), (argv, err)
    assert says.lower() in err.lower() and "Traceback" not in err, (argv, err)
    assert len(err.strip().splitlines()) == 1, err
    assert "\\n" not in err and "\\'" not in err, err  # no raw escapes
  assert not (tmp_path / "run").exists()


def test_train_help_lists_the_config_fields(capsys):
  assert cli.main(["--help"]) == 0
  out = capsys.readouterr().out
  assert "--config.optimizer.learning_rate=0.05" in out
  assert "--config.checkpoint_every_minutes=5.0" in out and "not by time" in out


# 4. Ctrl-C and SIGTERM stop cleanly with a checkpoint; resume keeps the metrics.

def _signal_after(monkeypatch, num_steps, signum=signal.SIGINT):
  """Makes Population.steps deliver ``signum`` to this process after ``num_steps`` steps."""
  steps = Population.steps

  def signalling(self, *args, **kwargs):
    for i, item in enumerate(steps(self, *args, **kwargs)):
      if i == num_steps:
        signal.raise_signal(signum)
      yield item

  monkeypatch.setattr(Population, "steps", signalling)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_saves_a_checkpoint_and_resumes_to_the_uninterrupted_result(
    tmp_path, digits, full, monkeypatch, capsys, signum):
  full, full_records = full
  before = signal.getsignal(signal.SIGINT)  # pytest-xdist workers ignore SIGINT
  with monkeypatch.context() as m:
    _signal_after(m, 15, signum)  # after epoch 1 (11 steps) and 4 steps of epoch 2
    cut = loop.fit(_config(), tmp_path / "cut", data=digits)
  err = capsys.readouterr().err
  assert cut["interrupted"] and cut["steps"] == 16, cut
  assert checkpoint.manager(tmp_path / "cut" / "checkpoints").all_steps() == [16]
  assert "stopping after this step" in err and "continue with --resume" in err, err
  assert [r["epoch"] for r in _records(tmp_path / "cut")] == [1]
  assert signal.getsignal(signal.SIGINT) is before  # the handler is restored
  resumed = loop.fit(_config(), tmp_path / "cut", resume=True, data=digits)
  for key in ("train_loss", "val_loss", "test_loss", "test_accuracy"):
    assert resumed[key] == pytest.approx(full[key], rel=1e-6), key
  records = _records(tmp_path / "cut")
  assert [r["epoch"] for r in records] == [1, 2, 3]  # epoch 1's record kept
  for a, b in zip(full_records, records):
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-6)


def test_killed_and_resumed_run_equals_uninterrupted(tmp_path, digits, full, cut):
  full, full_records = full
  result, killed = cut
  assert result == {"interrupted": True, "steps": 20,
                    "checkpoint": str(killed / "checkpoints" / "14")}  # the last checkpoint
  workdir = _copy(cut, tmp_path)
  resumed = loop.fit(_config(checkpoint_every_steps=7), workdir, resume=True, data=digits)
  for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
              "test_accuracy"):
    assert resumed[key] == pytest.approx(full[key], rel=1e-6), key
  records = _records(workdir)
  assert [r["epoch"] for r in records] == [1, 2, 3]
  for ra, rb in zip(full_records, records):
    assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-6)
    assert rb["val_loss"] == pytest.approx(ra["val_loss"], rel=1e-6)
  # Without --resume an existing run is not overwritten.
  with pytest.raises(ValueError, match="resume"):
    loop.fit(_config(), workdir, data=digits)


def test_lookahead_changes_the_run_and_a_resumed_run_equals_an_uninterrupted_one(tmp_path,
                                                                                digits, full):
  """The slow weights are part of the checkpoint: a run killed at step 20 (checkpoint at 14,
  between lookahead steps at 10 and 15) resumes to the uninterrupted run's numbers."""
  look = {"lookahead.every": 5}
  whole = loop.fit(_config(**look), tmp_path / "whole", data=digits)
  assert whole["train_loss"] != pytest.approx(full[0]["train_loss"], rel=1e-3)
  loop.fit(_config(checkpoint_every_steps=7, stop_after_steps=20, **look), tmp_path / "cut",
           data=digits)
  resumed = loop.fit(_config(checkpoint_every_steps=7, **look), tmp_path / "cut", resume=True,
                     data=digits)
  for key in ("train_loss", "val_loss", "test_loss", "test_accuracy"):
    assert resumed[key] == pytest.approx(whole[key], rel=1e-6), key


@pytest.mark.parametrize("changes, says", [
    ({"model.name": "simple_cnn"}, "model.name: 'simple_cnn_small' -> 'simple_cnn'"),
    ({"lookahead.every": 5}, "lookahead.every: 0 -> 5"),  # the checkpoint has no slow weights
])
def test_a_resume_that_does_not_fit_names_the_changed_fields_and_leaves_the_folder_alone(
    tmp_path, digits, cut, changes, says):
  workdir = _copy(cut, tmp_path)
  before = {p.name: p.read_bytes() for p in workdir.iterdir() if p.is_file()}
  with pytest.raises(checkpoint.CheckpointError, match="Cannot resume") as e:
    loop.fit(_config(**changes), workdir, resume=True, data=digits)
  message = str(e.value)
  assert f"differs from {workdir / 'config.json'} in: " in message and says in message, message
  after = {p.name: p.read_bytes() for p in workdir.iterdir() if p.is_file()}
  assert after == before


def test_cli_ctrl_c_exits_130_with_one_message_and_no_traceback(tmp_path, monkeypatch, capsys):
  _signal_after(monkeypatch, 3)
  status = cli.main(["--workdir", str(tmp_path / "run"), "--config.model.name=simple_cnn_small",
                     "--config.num_epochs=2", "--config.progress_bar=False"])
  err = capsys.readouterr().err
  assert status == 130 and "Traceback" not in err, err
  assert "Stopped at step 4" in err and "--resume --workdir" in err, err
  assert checkpoint.manager(tmp_path / "run" / "checkpoints").all_steps() == [4]


def test_checkpoints_are_also_written_by_time(tmp_path, digits):
  loop.fit(_config(num_epochs=1, log_every_steps=100, checkpoint_every_minutes=1e-6,
                   keep_checkpoints=0, **{"schedule.warmup_epochs": 0.0}),
           tmp_path / "run", data=digits)
  assert checkpoint.manager(tmp_path / "run" / "checkpoints").all_steps() == list(range(1, 12))


# 5. Checksums: a damaged checkpoint is reported and skipped.

def _damage(step_dir):
  files = sorted(f for f in (step_dir / "state").rglob("*") if f.is_file() and f.stat().st_size)
  data = bytearray(files[-1].read_bytes())
  data[len(data) // 2] ^= 0xFF  # one flipped byte
  files[-1].write_bytes(bytes(data))


def test_a_damaged_checkpoint_is_reported_and_resume_falls_back_to_an_intact_one(
    tmp_path, digits, full, cut, capsys):
  full, _ = full
  _copy(cut, tmp_path)
  mngr = checkpoint.manager(tmp_path / "cut" / "checkpoints")
  assert mngr.all_steps() == [7, 14] and checkpoint.intact_steps(mngr) == [7, 14]
  _damage(tmp_path / "cut" / "checkpoints" / "14")
  assert checkpoint.verify(mngr, 14) and "match their checksums" in checkpoint.verify(mngr, 14)
  assert checkpoint.intact_steps(mngr) == [7]
  (tmp_path / "cut" / "checkpoints" / "7.sha256.json").unlink()  # killed before its checksums:
  assert checkpoint.intact_steps(mngr) == [7]  # orbax's atomic write still vouches for it
  capsys.readouterr()
  resumed = loop.fit(_config(checkpoint_every_steps=7), tmp_path / "cut", resume=True, data=digits)
  err = capsys.readouterr().err
  assert "step 14" in err and "damaged" in err and "falling back" in err, err
  assert "Resuming from the checkpoint of step 7" in err, err
  assert (tmp_path / "cut" / "checkpoints.damaged" / "14" / "state").is_dir()  # kept, aside
  assert resumed["test_loss"] == pytest.approx(full["test_loss"], rel=1e-6)


def test_every_checkpoint_damaged_is_an_error(tmp_path, digits, cut):
  workdir = _copy(cut, tmp_path)
  for step in (7, 14):
    _damage(workdir / "checkpoints" / str(step))
  with pytest.raises(checkpoint.CheckpointError, match="Every checkpoint .* is damaged"):
    loop.fit(_config(checkpoint_every_steps=7), workdir, resume=True, data=digits)


def test_nan_stop_names_the_step_the_newest_intact_checkpoint_and_a_lower_rate(tmp_path, digits):
  # The learning rate jumps by 1e30 at epoch 2 (step 22): the loss blows up right after.
  config = _config(checkpoint_every_steps=11, **{"schedule.name": "step",
                                                 "schedule.warmup_epochs": 0.0,
                                                 "schedule.decay_epochs": (2,),
                                                 "schedule.decay_factor": 1e30})
  with pytest.raises(loop.NonFiniteLossError,
                     match=r"at step (2[3-9]|3[0-3]) .*checkpoint is step 22") as info:
    loop.fit(config, tmp_path / "nan", data=digits)
  assert re.search(r"step 22 .*lower rate.*learning_rate=0\.025", str(info.value)), info.value
  mngr = checkpoint.manager(tmp_path / "nan" / "checkpoints")
  assert mngr.all_steps() == [11, 22]
  schedule = make_schedule(config.schedule, learning_rate=1.0, steps_per_epoch=11, num_epochs=3)
  template = create_train_state(create_model("simple_cnn_small", num_classes=10),
                                make_optimizer(config.optimizer, 0.05, schedule=schedule),
                                jax.random.PRNGKey(0)[None], (8, 8, 1), stacked=True)
  state, loop_state = checkpoint.restore(mngr, template)  # a population of one: leading axis 1
  assert state.step.shape == (1,) and int(state.step[0]) == 22 and loop_state["step"] == 22
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))
  # Corrupt the checkpoint: a clear error naming it.
  for f in (tmp_path / "nan" / "checkpoints" / "22" / "state").rglob("*"):
    if f.is_file():
      f.write_bytes(b"garbage")
  with pytest.raises(checkpoint.CheckpointError, match="22.*damaged"):
    checkpoint.restore(mngr, template, step=22)
