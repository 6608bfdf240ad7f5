"""fit(): vmap over seeds, a sweep in one run, resuming with a changed rate, the run folder, and
the CLI's --config overrides. Killed and resumed runs, NaN stops and damaged or mismatched
checkpoints are in test_reliability.py (they share its uninterrupted and killed runs)."""

import json

import numpy as np
import pytest

from jaxcnn.data import datasets
from jaxcnn.train import cli
from jaxcnn.train.config import get_config
from jaxcnn.train.loop import fit

from fit_helpers import records as _records  # tests/train/fit_helpers.py
from fit_helpers import small_config as _config


@pytest.fixture(scope="module")
def digits():
  return {split: datasets.load("digits", split) for split in ("train", "test")}


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


def test_resume_with_a_changed_learning_rate_trains_at_the_new_rate(tmp_path, digits, capsys):
  base = {"schedule.name": "constant", "schedule.warmup_epochs": 0.0, "checkpoint_every_steps": 11}
  fit(_config(stop_after_steps=12, **base), tmp_path / "run", data=digits)  # checkpoint at 11
  capsys.readouterr()
  resumed = fit(_config(**base, **{"optimizer.learning_rate": 0.2}), tmp_path / "run",
                resume=True, data=digits)
  assert "optimizer.learning_rate: 0.05 -> 0.2" in capsys.readouterr().err
  records = _records(tmp_path / "run")
  assert [r["epoch"] for r in records] == [1, 2, 3]
  assert records[0]["learning_rate"] == pytest.approx(0.05)  # written before the change
  assert records[-1]["learning_rate"] == pytest.approx(0.2)
  same = fit(_config(**base), tmp_path / "same", data=digits)
  assert resumed["train_loss"] != pytest.approx(same["train_loss"], rel=1e-6)
  saved = json.loads((tmp_path / "run" / "config.json").read_text())
  assert saved["optimizer"]["learning_rate"] == 0.2


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
