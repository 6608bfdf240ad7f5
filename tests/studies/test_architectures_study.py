"""Architectures study: costs against hand counts, the budget bookkeeping, the plots' geometry,
and what it trains against an independent fit() of the same recipe."""

import dataclasses
import json
import math
import pathlib
import re

import numpy as np
import pytest

from jaxcnn.data import preprocessing, sources

from jaxcnn.studies import architectures, architectures_plots, common


CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "configs"


def _result(label, family, params, macs, acc, images_per_s):
  return architectures.ArchResult(
      label=label, spec=label, family=family, params=params, macs=macs, test_accuracy=acc,
      train_accuracy=acc, steps=10, images_per_s=images_per_s, compile_s=1.0, wall_s=2.0)


def test_model_costs_match_hand_count():
  # simple_cnn_small on 8x8x1 digits: 3x3x1x16 kernel (no bias), BatchNorm scale and bias (2 x 16),
  # dense 16 -> 10 with bias; MACs: 3x3x1x16 per position at 8x8, then the dense layer.
  params, macs = architectures.model_costs("simple_cnn_small", (1, 8, 8, 1), 10)
  assert params == 3 * 3 * 1 * 16 + 2 * 16 + 16 * 10 + 10
  assert macs == 8 * 8 * 3 * 3 * 1 * 16 + 16 * 10
  # Overrides in the spec reach the model: ResNet-20 with one block per stage has fewer weights.
  p8, _ = architectures.model_costs("resnet20(stage_sizes=(1, 1, 1))", (1, 32, 32, 3), 10)
  p20, _ = architectures.model_costs("resnet20", (1, 32, 32, 3), 10)
  assert 0 < p8 < p20
  assert architectures.family("resnet20(stage_sizes=(1, 1, 1))") == "resnet"
  assert architectures.family("mobilenet_v2(width=0.5)") == "mobilenet"
  # Without a shape, the registry's input size: simple_cnn_small at the digits' 8x8x1.
  assert architectures.model_costs("simple_cnn_small", num_classes=10) == (params, macs)


def test_train_config_is_the_same_recipe_for_every_model():
  config = common.load_config(CONFIGS / "architectures.py")
  a = architectures.train_config(config, "resnet20")
  b = architectures.train_config(config, "efficientnet_b0")
  assert a.model.to_dict() == {"name": "resnet20"}  # each model keeps its own act/norm/init
  assert b.model.to_dict() == {"name": "efficientnet_b0"}
  a.model.name = b.model.name
  assert a.to_dict() == b.to_dict()
  assert a.val_size == 0 and a.augment == tuple(config.augment)
  quick_config = common.load_config(CONFIGS / "architectures.py", "quick")
  quick = architectures.train_config(quick_config, "resnet20")
  assert quick.steps_per_epoch == quick_config.steps_per_epoch == 8
  assert quick.num_epochs == quick_config.num_epochs and quick.augment == ()


def test_full_setting_trains_every_family_for_the_same_epochs_of_all_of_cifar10():
  default = common.load_config(CONFIGS / "architectures.py")
  full = common.load_config(CONFIGS / "architectures.py", "full")
  assert (full.num_train, full.num_test, full.num_epochs) == (50_000, 10_000, 7)
  assert architectures.budget_steps(full, full.num_train) == (390, 7 * 390)
  families = lambda c: sorted(architectures.family(spec) for _, spec in c.models)  # noqa: E731
  assert families(full) == families(default) and len(full.models) == 8
  assert full.models[0] == ("ResNet-20", "resnet20")
  # The half-width VGG-11-BN, counted by hand: 3x3 convs at 32, 16, 8, 4, 2 pixels, then the
  # classifier on the 7x7 adaptive pool (torchvision's layout) of 256 channels.
  convs = [(3, 32, 32), (32, 64, 16), (64, 128, 8), (128, 128, 8), (128, 256, 4), (256, 256, 4),
           (256, 256, 2), (256, 256, 2)]
  dense = [(256 * 49, 512), (512, 512), (512, 10)]
  by_hand = sum(9 * i * o * hw * hw for i, o, hw in convs) + sum(i * o for i, o in dense)
  assert architectures.model_costs(dict(full.models)["VGG-11-BN-0.5"], (1, 32, 32, 3))[1] == by_hand


def test_quick_data_are_digits_subsets():
  config = common.load_config(CONFIGS / "architectures.py", "quick")
  data = architectures.load_data(config)
  assert data["train"]["image"].shape == (config.num_train, 8, 8, 1)
  assert data["test"]["image"].shape[1:] == (8, 8, 1)
  assert data["train"]["image"].dtype == np.uint8 and data["train"]["label"].dtype == np.int32
  assert set(np.unique(data["train"]["label"])) == set(range(10))
  again = architectures.load_data(config)
  np.testing.assert_array_equal(again["train"]["label"], data["train"]["label"])


def test_bubble_sizes_are_proportional_to_params():
  sizes = architectures_plots.bubble_sizes([1e6, 2e6, 4e6])
  np.testing.assert_allclose(sizes, [225.0, 450.0, 900.0])
  assert architectures_plots.bubble_sizes([1.0, 1e6])[0] == 30.0  # clipped so tiny nets stay visible
  with pytest.raises(ValueError, match="positive"):
    architectures_plots.bubble_sizes([0.0, 1.0])


def test_log_correlation_against_pearson_by_hand():
  x = np.array([1e6, 3e6, 1e7, 4e7])
  assert architectures.log_correlation(x, 2.0 * x**0.7) == pytest.approx(1.0)
  assert architectures.log_correlation(x, 1.0 / x) == pytest.approx(-1.0)
  y = np.array([0.3, 0.2, 0.5, 0.45])
  lx, ly = np.log(x), np.log(y)
  dx, dy = lx - lx.mean(), ly - ly.mean()
  pearson = (dx * dy).sum() / math.sqrt((dx**2).sum() * (dy**2).sum())
  assert architectures.log_correlation(x, y) == pytest.approx(pearson)
  assert math.isnan(architectures.log_correlation(x[:2], y[:2]))


def test_plots(tmp_path):
  results = [_result("a", "resnet", 3e5, 4e7, 0.40, 400.0),
             _result("b", "vgg", 2e7, 1.6e8, 0.35, 100.0),
             _result("c", "mobilenet", 7e5, 2e6, 0.30, 10_000.0)]
  fig = architectures_plots.plot_accuracy_vs_cost(results, str(tmp_path / "acc.png"), chance=0.1)
  assert (tmp_path / "acc.png").read_bytes()[:4] == b"\x89PNG"
  assert [ax.get_xscale() for ax in fig.axes[:2]] == ["log", "log"]
  # The bubbles sit at (MACs, accuracy in %), in the order given.
  offsets = fig.axes[0].collections[1].get_offsets()
  np.testing.assert_allclose(np.asarray(offsets)[0], [1.6e8, 35.0])

  fig = architectures_plots.plot_time_vs_macs(results, str(tmp_path / "time.png"))
  assert (tmp_path / "time.png").stat().st_size > 0
  # The dashed line is time = k * MACs with log k the mean of log(time / MACs).
  line = fig.axes[0].lines[0]
  k = np.exp(np.mean(np.log([1e3 / 400 / 4e7, 1e3 / 100 / 1.6e8, 1e3 / 1e4 / 2e6])))
  np.testing.assert_allclose(line.get_ydata() / line.get_xdata(), k, rtol=1e-9)
  with pytest.raises(ValueError, match="at least one"):
    architectures_plots.plot_accuracy_vs_cost([])


def _quick_source(steps=2, num_train=128):
  config = common.load_config(CONFIGS / "architectures.py", "quick")
  config.steps_per_epoch = steps
  config.num_train = num_train
  data = architectures.load_data(config)
  return config, data, sources.InMemory(data, eval_batch_size=config.eval_batch_size)


def test_train_one_on_a_shared_source(capsys):
  config, data, source = _quick_source()
  transform = preprocessing.fit(config.preprocessing, data["train"]["image"])
  r = architectures.train_one(config, "tiny", "simple_cnn_small", source, transform)
  assert re.search(r"tiny, seed 0: +\d+%.*step/s", capsys.readouterr().err)  # the progress bar
  assert r.steps == 2 and r.family == "simple" and r.seeds == 1
  assert r.params == 3 * 3 * 1 * 16 + 2 * 16 + 16 * 10 + 10
  assert 0.0 <= r.test_accuracy <= 1.0 and r.images_per_s > 0
  assert r.wall_s >= r.compile_s > 0


@pytest.mark.parametrize("epochs", [1, 2])  # 2: shortened epochs (3 steps of a 16-step pass)
def test_study_trains_what_fit_trains(tmp_path, epochs):
  """The study's population equals fit() of the same engine config, run independently: same
  data order, initial variables, optax chain and schedule, hence the same accuracies."""
  from jaxcnn.train.loop import fit  # pylint: disable=g-import-not-at-top

  config, data, source = _quick_source(steps=3)
  config.num_epochs = epochs
  transform = preprocessing.fit(config.preprocessing, data["train"]["image"])
  spec = "simple_cnn_small"
  r = architectures.train_one(config, "SimpleCNN-small", spec, source, transform)
  ref = fit(architectures.train_config(config, spec), str(tmp_path / "fit"), data=data)
  assert ref["steps"] == r.steps == 3 * epochs
  assert r.test_accuracy == pytest.approx(ref["test_accuracy"], abs=1e-6)
  assert r.train_accuracy == pytest.approx(ref["train_accuracy"], abs=1e-6)
  records = [json.loads(l) for l in (tmp_path / "fit" / "metrics.jsonl").read_text().splitlines()]
  assert records[-1]["step"] == 3 * epochs


def test_run_quick_writes_report_results_and_figures(tmp_path, capsys):
  config, _, _ = _quick_source(steps=2)
  config.models = (("SimpleCNN-small", "simple_cnn_small"),)
  config.num_seeds = 2  # one population of two models
  out = architectures.run(config, str(tmp_path))
  printed = capsys.readouterr().out
  assert "corr(log time, log MACs) = n/a" in printed and "nan" not in printed, printed
  assert isinstance(out, architectures.Results) and len(out.models) == 1
  assert out.models[0].seeds == 2 and out.models[0].test_accuracy_std >= 0.0
  assert out.image_shape == (8, 8, 1) and out.num_train == 128 and out.num_test == 179
  text = (tmp_path / "architectures.md").read_text()
  assert text.startswith("# Architectures under one budget\n\nData: digits")
  assert "| model | spec | family | params |" in text and "| SimpleCNN-small |" in text
  assert "2 seeds per model" in text and " ± " in text
  assert "![accuracy_vs_cost](accuracy_vs_cost.png)" in text
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["models"][0]["test_accuracy"] == pytest.approx(out.models[0].test_accuracy)
  assert saved["corr_time_macs"] is None  # NaN (one model) is null in strict JSON
  for f in out.figures:
    assert (tmp_path / f).read_bytes()[:4] == b"\x89PNG"


def test_an_interrupted_run_trains_only_the_models_it_lacks(tmp_path, monkeypatch):
  config, _, _ = _quick_source(steps=2)
  config.models = (("A", "simple_cnn_small"), ("B", "resnet20(stage_sizes=(1, 1, 1))"),
                   ("C", "simple_cnn_small"))
  trained = []

  def fake_train_one(config, label, spec, source, transform, fail_on=None):
    if label == fail_on:
      raise KeyboardInterrupt  # Ctrl-C while this model trains
    trained.append(label)
    return dataclasses.replace(
        _result(label, "simple", 100 * (len(trained) + 1), 1e6 * len(trained), 0.5, 100.0),
        spec=spec)

  monkeypatch.setattr(architectures, "train_one",
                      lambda *a: fake_train_one(*a, fail_on="B"))
  with pytest.raises(KeyboardInterrupt):
    architectures.run(config, str(tmp_path))
  assert trained == ["A"]
  # What finished before the interruption is saved: its row and a report of it.
  assert "| A |" in (tmp_path / "architectures.md").read_text()
  lines = (tmp_path / "models.jsonl").read_text().splitlines()
  assert json.loads(lines[0])["recipe"]["learning_rate"] == config.learning_rate
  assert [json.loads(l)["label"] for l in lines[1:]] == ["A"]

  monkeypatch.setattr(architectures, "train_one", fake_train_one)
  out = architectures.run(config, str(tmp_path))
  assert trained == ["A", "B", "C"]  # A was not trained again
  assert [m.label for m in out.models] == ["A", "B", "C"]
  assert out.models[0].params == 200  # A's row from the first call
  text = (tmp_path / "architectures.md").read_text()
  assert all(f"| {label} |" in text for label in "ABC")
  # A model added to the list trains alone; a changed recipe is refused by name.
  config.models = (*config.models, ("D", "simple_cnn_small"))
  architectures.run(config, str(tmp_path))
  assert trained == ["A", "B", "C", "D"]
  config.learning_rate = 0.5
  with pytest.raises(ValueError, match=r"differs in: learning_rate: 0.002 -> 0.5\. "):
    architectures.run(config, str(tmp_path))
  assert trained == ["A", "B", "C", "D"]
