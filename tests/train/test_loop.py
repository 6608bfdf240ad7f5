"""fit(): resume equals an uninterrupted run, NaN stops with the step named, corrupt checkpoints,
vmap over seeds, the run folder, and the CLI's --config overrides."""

import json

import jax
import numpy as np
import pytest

from jaxcnn.data import datasets
from jaxcnn.train import checkpoint, cli
from jaxcnn.train.config import get_config
from jaxcnn.train.loop import NonFiniteLossError, fit

from fit_helpers import records as _records  # tests/train/fit_helpers.py
from fit_helpers import small_config as _config


@pytest.fixture(scope="module")
def digits():
  return {split: datasets.load("digits", split) for split in ("train", "test")}


def test_killed_and_resumed_run_equals_uninterrupted(tmp_path, digits):
  full = fit(_config(), tmp_path / "full", data=digits)
  # Killed at step 20 (epoch 2, step 9 of 11); the last checkpoint is step 14.
  cut = fit(_config(checkpoint_every_steps=7, stop_after_steps=20), tmp_path / "cut", data=digits)
  assert cut == {"interrupted": True, "steps": 20,
                 "checkpoint": str(tmp_path / "cut" / "checkpoints" / "14")}
  resumed = fit(_config(checkpoint_every_steps=7), tmp_path / "cut", resume=True, data=digits)
  for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
              "test_accuracy"):
    assert resumed[key] == pytest.approx(full[key], rel=1e-6), key
  a, b = _records(tmp_path / "full"), _records(tmp_path / "cut")
  assert [r["epoch"] for r in b] == [1, 2, 3]
  for ra, rb in zip(a, b):
    assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-6)
    assert rb["val_loss"] == pytest.approx(ra["val_loss"], rel=1e-6)
  # Without --resume an existing run is not overwritten.
  with pytest.raises(ValueError, match="resume"):
    fit(_config(), tmp_path / "cut", data=digits)


def test_nan_loss_stops_naming_the_step_and_keeps_last_good_checkpoint(tmp_path, digits):
  # The learning rate jumps by 1e30 at epoch 2 (step 22): the loss blows up right after.
  config = _config(checkpoint_every_steps=11, **{"schedule.name": "step",
                                                 "schedule.warmup_epochs": 0.0,
                                                 "schedule.decay_epochs": (2,),
                                                 "schedule.decay_factor": 1e30})
  with pytest.raises(NonFiniteLossError, match=r"at step (2[3-9]|3[0-3]) .*checkpoint is step 22"):
    fit(config, tmp_path / "nan", data=digits)
  mngr = checkpoint.manager(tmp_path / "nan" / "checkpoints")
  assert mngr.all_steps() == [11, 22]
  from jaxcnn.models import create_model
  from jaxcnn.train.optim import make_optimizer, make_schedule
  from jaxcnn.train.state import create_train_state
  schedule = make_schedule(config.schedule, learning_rate=1.0, steps_per_epoch=11, num_epochs=3)
  template = create_train_state(create_model("simple_cnn_small", num_classes=10),
                                make_optimizer(config.optimizer, 0.05, schedule=schedule),
                                jax.random.PRNGKey(0)[None], (8, 8, 1), stacked=True)
  state, loop = checkpoint.restore(mngr, template)  # a population of one: leading axis 1
  assert state.step.shape == (1,) and int(state.step[0]) == 22 and loop["step"] == 22
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))
  # Corrupt the checkpoint: a clear error naming it.
  for f in (tmp_path / "nan" / "checkpoints" / "22" / "state").rglob("*"):
    if f.is_file():
      f.write_bytes(b"garbage")
  with pytest.raises(checkpoint.CheckpointError, match="22.*damaged"):
    checkpoint.restore(mngr, template, step=22)


def test_vmap_over_seeds_reports_per_model_and_mean_std(tmp_path, digits):
  both = fit(_config(num_epochs=1, steps_per_epoch=4, num_models=2, seed=3,
                     **{"schedule.warmup_epochs": 0.0}),
             tmp_path / "both", data=digits)
  assert len(both["test_accuracy_per_model"]) == 2
  assert both["test_accuracy"] == pytest.approx(np.mean(both["test_accuracy_per_model"]))
  assert both["test_accuracy_std"] == pytest.approx(np.std(both["test_accuracy_per_model"]))
  # Each model trained on its own seed (the step-level equality with separate runs is in
  # test_steps.py): different seeds, different results.
  assert both["test_loss_per_model"][0] != both["test_loss_per_model"][1]


def test_hyperparameter_sweep_in_one_vmapped_run_equals_separate_runs(tmp_path, digits):
  base = {"num_epochs": 1, "steps_per_epoch": 5, "schedule.name": "constant",
          "schedule.warmup_epochs": 0.0}
  sweep = fit(_config(**base, **{"sweep.learning_rate": (0.02, 0.2),
                                 "sweep.weight_decay": (0.0, 1e-3)}), tmp_path / "sweep",
              data=digits)
  assert sweep["models"] == ["learning_rate=0.02,weight_decay=0",
                             "learning_rate=0.2,weight_decay=0.001"]
  for m, (lr, wd) in enumerate([(0.02, 0.0), (0.2, 1e-3)]):
    single = fit(_config(**base, **{"optimizer.learning_rate": lr, "optimizer.weight_decay": wd}),
                 tmp_path / f"single{m}", data=digits)
    for key in ("train_loss", "val_loss", "test_loss"):
      assert sweep[key + "_per_model"][m] == pytest.approx(single[key], rel=1e-4), (m, key)
    assert sweep["test_accuracy_per_model"][m] == pytest.approx(single["test_accuracy"], abs=0.006)
  assert abs(sweep["train_loss_per_model"][0] - sweep["train_loss_per_model"][1]) > 1e-3
  record = _records(tmp_path / "sweep")[-1]
  assert record["models"] == sweep["models"]
  assert record["learning_rate_per_model"] == pytest.approx([0.02, 0.2])
  with pytest.raises(ValueError, match="equal lengths"):
    fit(_config(**{"sweep.learning_rate": (0.1, 0.2), "sweep.weight_decay": (0.0,)}),
        tmp_path / "bad", data=digits)


def test_cli_overrides_and_run_folder(tmp_path, capsys):
  workdir = tmp_path / "run"
  status = cli.main(["--workdir", str(workdir), "--config.num_epochs=2",
                     "--config.model.name=simple_cnn_small", "--config.batch_size=128",
                     "--config.progress_bar=False", "--config.optimizer.name=adamw",
                     "--config.optimizer.learning_rate=0.003"])
  assert status == 0
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["num_epochs"] == 2 and saved["optimizer"]["name"] == "adamw"
  assert saved["model"]["name"] == "simple_cnn_small"
  records = _records(workdir)
  assert [r["epoch"] for r in records] == [1, 2]
  for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
              "test_accuracy", "step_time_s", "images_per_s", "learning_rate"):
    assert np.isfinite(records[-1][key]), key
  for name in ("loss.png", "accuracy.png", "results.json", "preprocessing.npz"):
    assert (workdir / name).stat().st_size > 0, name
  assert (workdir / "checkpoints").is_dir()
  out = capsys.readouterr().out
  assert "Final test accuracy" in out
  # Unknown config keys and missing --workdir for --resume are usage errors.
  assert cli.main(["--workdir", str(tmp_path / "x"), "--config.no_such_field=1"]) == 2
  assert cli.main(["--resume"]) == 2


def test_val_size_count_survives_the_float_config_field(digits):
  from jaxcnn.train.loop import _carve_validation
  config = get_config()
  config.val_size = 50  # the field is a float: stored as 50.0, as in the mnist/cifar10 configs
  split = _carve_validation(dict(digits), config)
  assert len(split["val"]["label"]) == 50
  assert len(split["train"]["label"]) == len(digits["train"]["label"]) - 50


def test_resume_with_a_changed_learning_rate_trains_at_the_new_rate(tmp_path, digits):
  base = {"schedule.name": "constant", "schedule.warmup_epochs": 0.0, "checkpoint_every_steps": 11}
  fit(_config(stop_after_steps=12, **base), tmp_path / "run", data=digits)  # checkpoint at 11
  resumed = fit(_config(**base, **{"optimizer.learning_rate": 0.2}), tmp_path / "run",
                resume=True, data=digits)
  records = _records(tmp_path / "run")
  assert [r["epoch"] for r in records] == [1, 2, 3]
  assert records[0]["learning_rate"] == pytest.approx(0.05)  # written before the change
  assert records[-1]["learning_rate"] == pytest.approx(0.2)
  same = fit(_config(**base), tmp_path / "same", data=digits)
  assert resumed["train_loss"] != pytest.approx(same["train_loss"], rel=1e-6)
  saved = json.loads((tmp_path / "run" / "config.json").read_text())
  assert saved["optimizer"]["learning_rate"] == 0.2


def test_a_resume_that_does_not_fit_leaves_the_run_folder_alone(tmp_path, digits):
  fit(_config(num_epochs=1, checkpoint_every_steps=11, **{"schedule.warmup_epochs": 0.0}),
      tmp_path / "run", data=digits)
  before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
  with pytest.raises(checkpoint.CheckpointError):
    fit(_config(num_epochs=2, **{"model.name": "simple_cnn", "schedule.warmup_epochs": 0.0}),
        tmp_path / "run", resume=True, data=digits)
  after = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
  assert after == before


def test_a_mistyped_or_empty_data_dir_is_an_error_naming_it(tmp_path, capsys):
  missing, empty = tmp_path / "no_such_folder", tmp_path / "empty"
  empty.mkdir()
  for folder, says in ((missing, "does not exist"), (empty, "holds no data for 'digits'")):
    status = cli.main(["--workdir", str(tmp_path / "run"), f"--config.data_dir={folder}",
                       "--config.progress_bar=False"])
    err = capsys.readouterr().err
    assert status == 1, err
    assert says in err and str(folder) in err and "{split}.npz files" in err, err
  assert not missing.exists() and not any(empty.iterdir())  # nothing created or prepared there
  assert not (tmp_path / "run").exists()
