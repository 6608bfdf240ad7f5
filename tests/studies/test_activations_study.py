"""Activation study: derivatives against closed forms, iterations-to-target on synthetic curves,
and a tiny end-to-end run (dead/saturated unit statistics are tested in tests/test_diagnostics.py)."""

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.nn import activations as acts
from jaxcnn.data import preprocessing, sources
from jaxcnn.studies import activations as study
from jaxcnn.studies import activations_plots as plots
from jaxcnn.studies import common


CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "configs"

# Closed-form values and derivatives, written with NumPy independently of jaxcnn.
_sig = lambda x: 1.0 / (1.0 + np.exp(-x))
_A, _L = acts.SELU_ALPHA, acts.SELU_SCALE
CLOSED_FORM = {
    "sigmoid": (_sig, lambda x: _sig(x) * (1 - _sig(x))),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "relu": (lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(float)),
    "leaky_relu": (lambda x: np.where(x > 0, x, 0.01 * x), lambda x: np.where(x > 0, 1.0, 0.01)),
    "prelu": (lambda x: np.where(x > 0, x, 0.25 * x), lambda x: np.where(x > 0, 1.0, 0.25)),
    "elu": (lambda x: np.where(x > 0, x, np.expm1(x)), lambda x: np.where(x > 0, 1.0, np.exp(x))),
    "selu": (lambda x: _L * np.where(x > 0, x, _A * np.expm1(x)),
             lambda x: _L * np.where(x > 0, 1.0, _A * np.exp(x))),
    "maxout": (lambda x: np.maximum(x, 0.25 * x - 0.5),
               lambda x: np.where(x > 0.25 * x - 0.5, 1.0, 0.25)),
    "swish": (lambda x: x * _sig(x), lambda x: _sig(x) + x * _sig(x) * (1 - _sig(x))),
}


@pytest.mark.parametrize("name", study.ACTIVATIONS)
def test_activation_curve_matches_closed_form_derivative(name):
  x = np.linspace(-4, 4, 81) + 0.013  # off the kinks at 0 and -2/3
  y, dy = study.activation_curve(name, x)
  f, df = CLOSED_FORM[name]
  np.testing.assert_allclose(y, f(x), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(dy, df(x), rtol=1e-5, atol=1e-6)


def test_activation_curve_rejects_bad_input_and_plot_draws_every_panel():
  with pytest.raises(ValueError, match="1-D grid"):
    study.activation_curve("relu", np.zeros((2, 2)))
  with pytest.raises(ValueError, match="Unknown activation"):
    study.activation_curve("no_such_act", np.zeros(3))
  fig = plots.plot_activations(("relu", "tanh", "maxout", "prelu"))
  lines = [ax.get_lines() for ax in fig.axes if ax.get_lines()]
  assert len(lines) == 4
  # The dashed line of the tanh panel is 1 - tanh^2.
  x, dy = lines[1][1].get_data()
  np.testing.assert_allclose(dy, 1 - np.tanh(x) ** 2, atol=1e-6)


def test_speedup_is_a_ratio_of_means_or_a_lower_bound():
  its = {"relu": np.array([100, 120]), "tanh": np.array([600, 720]),
         "sigmoid": np.array([900, -1]), "bad": np.array([-1, 50])}
  assert study.speedup(its, "tanh", "relu", 1000) == (pytest.approx(6.0), True)
  ratio, exact = study.speedup(its, "sigmoid", "relu", 1000)
  assert ratio == pytest.approx(1900 / 220) and not exact
  assert math.isnan(study.speedup(its, "tanh", "bad", 1000)[0])


def _variables(model, key, x):
  return model.init(key, x)["params"]


@pytest.mark.parametrize("act, extra", [("relu", 0), ("prelu", 4 + 6),
                                        ("maxout", (4 * 8 + 8) + (6 * 12 + 12))])
def test_actcnn_parameter_count_jit_and_vmap(act, extra):
  model = study.ActCNN(num_classes=10, features=(4,), hidden=6, kernel_size=3, act=act)
  x = jnp.ones((2, 8, 8, 1))
  params = _variables(model, jax.random.key(0), x)
  # conv 3*3*1*4 + 4, dense (4*4*4)*6 + 6, head 6*10 + 10.
  assert sum(a.size for a in jax.tree.leaves(params)) == 40 + 390 + 70 + extra
  keys = jax.random.split(jax.random.key(0), 3)
  stacked = jax.vmap(lambda k: _variables(model, k, x))(keys)
  out = jax.jit(jax.vmap(lambda p: model.apply({"params": p}, x)))(stacked)
  assert out.shape == (3, 2, 10)
  np.testing.assert_allclose(out[0], model.apply({"params": jax.tree.map(lambda a: a[0], stacked)},
                                                 x), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="NHWC"):
    model.apply({"params": params}, jnp.ones((8, 8, 1)))


# -m slow: notebooks/02_activations.ipynb runs this study's quick setting end to end in the fast suite
# (tests/test_studies_run.py); this checks the report's contents at a smaller one.
@pytest.mark.slow
def test_tiny_run_writes_table_and_figures(tmp_path):
  config = common.load_config(CONFIGS / "activations.py", "quick")
  config.activations = ("relu",)
  config.num_steps = 8
  config.eval_every_steps = 4
  config.smoothing_steps = 4
  config.target_error = 1.0
  config.plot_activations = ("relu", "maxout")
  results = study.run(config, str(tmp_path))
  files = {p.name for p in pathlib.Path(tmp_path).iterdir()}
  assert {"activations.md", "activation_functions.png", "curves.png", "iterations.png",
          "unit_stats.png", "results.json"} <= files
  r = results.runs["relu"]
  assert r.step_errors.shape == (8, 2)
  np.testing.assert_array_equal(r.eval_steps, [0, 4, 8])
  assert r.dead.shape == (3, 2, 3)  # evaluations, seeds, activation layers
  # The train error at each evaluation is the mean of the step errors since the last one.
  np.testing.assert_allclose(r.train_error[1], r.step_errors[:4].mean(axis=0))
  assert np.isnan(r.train_error[0]).all()
  # Target 100% error: reached after the first full window.
  np.testing.assert_array_equal(results.iterations["relu"], [4, 4])
  assert "| relu |" in (tmp_path / "activations.md").read_text()
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["iterations"]["relu"] == [4, 4] and saved["runs"]["relu"]["seeds"] == [0, 1]
  config.activations = ("nope",)
  with pytest.raises(ValueError, match="Unknown activation"):
    study.run(config, str(tmp_path))


def test_running_errors_average_since_the_previous_evaluation():
  errors = np.arange(12, dtype=float).reshape(6, 2)
  out = study.running_errors(errors, [0, 2, 3, 6])
  assert np.isnan(out[0]).all()
  np.testing.assert_allclose(out[1:], [errors[:2].mean(0), errors[2], errors[3:].mean(0)])


def test_population_model_m_equals_a_single_model_run_with_seed_m():
  """Stacking is independent: model m of the seed population trains as a population of one
  (the plain, unvmapped step) with seed m, on the same shared source."""
  config = common.load_config(CONFIGS / "activations.py", "quick")
  config.num_steps = 6
  config.eval_every_steps = 3
  config.num_seeds = 2
  config.seed = 5
  data = study.load_data(config)
  transform = preprocessing.fit(config.preprocessing, data["train"]["image"])
  source = sources.InMemory(data)
  both = study.train_activation("relu", config, source, transform)
  assert both.seeds == (5, 6)
  one = study.train_activation("relu", config, source, transform, seeds=[6])
  np.testing.assert_allclose(one.step_losses[:, 0], both.step_losses[:, 1], rtol=1e-5)
  np.testing.assert_allclose(one.step_errors[:, 0], both.step_errors[:, 1], atol=1e-6)
  np.testing.assert_allclose(one.val_error[:, 0], both.val_error[:, 1], atol=1e-6)
  np.testing.assert_allclose(one.dead[:, 0], both.dead[:, 1], atol=1e-6)
  assert one.num_params == both.num_params
  assert not np.allclose(both.step_losses[:, 0], both.step_losses[:, 1])


def test_a_diverging_activation_is_recorded_not_fatal():
  """A learning rate that blows the loss up to NaN ends as a table row saying so (the full study's
  maxout at the shared rate), not as an exception that loses the other activations."""
  config = common.load_config(CONFIGS / "activations.py", "quick")
  config.num_steps, config.eval_every_steps, config.num_seeds = 4, 2, 2
  config.learning_rates["relu"] = 1e9
  data = study.load_data(config)
  transform = preprocessing.fit(config.preprocessing, data["train"]["image"])
  run = study.train_activation("relu", config, sources.InMemory(data), transform)
  assert not np.isfinite(run.step_losses).all()
  assert "2/2 seeds diverged" in study._diverged_note(run)


def test_a_smoothing_window_longer_than_the_run_fails_before_training(tmp_path, monkeypatch):
  config = common.load_config(CONFIGS / "activations.py", "quick")
  config.num_steps, config.smoothing_steps = 4, 10
  monkeypatch.setattr(study, "train_activation", lambda *a, **k: pytest.fail("trained"))
  with pytest.raises(ValueError, match=r"smoothing_steps=10 must lie in \[1, config.num_steps=4\]"):
    study.run(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()  # nothing written either
