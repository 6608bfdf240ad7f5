"""Batch-normalization study: constancy metrics on constructed inputs, BN at init against NumPy,
the ReLU arc-cosine map and homogeneity in closed form, and a quick run.

References: Ioffe & Szegedy 2015, "Batch Normalization" (Algorithm 1); Cho & Saul 2009, "Kernel
Methods for Deep Learning" (arc-cosine kernel of degree 1).
"""

import itertools
import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.data import preprocessing, sources
from jaxcnn.studies import batchnorm, common


CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "configs"

EPS = 1e-5  # the "batch" spec's documented epsilon


def _cosine_reference(h):
  h = np.asarray(h, np.float64)
  sims = []
  for i, j in itertools.permutations(range(len(h)), 2):
    ni, nj = np.linalg.norm(h[i]), np.linalg.norm(h[j])
    sims.append(0.0 if ni == 0 or nj == 0 else h[i] @ h[j] / (ni * nj))
  return np.mean(sims)


def test_cosine_similarity_identical_orthogonal_and_reference():
  row = np.array([0.3, -1.0, 2.0, 0.5])
  identical = np.tile(row, (6, 1))
  assert float(batchnorm.mean_cosine_similarity(identical)) == pytest.approx(1.0, abs=1e-6)
  assert float(batchnorm.mean_cosine_similarity(np.eye(5))) == pytest.approx(0.0, abs=1e-7)
  # Rows that are positive multiples of one another also count as identical (scale-free).
  scaled = row[None] * np.array([[0.1], [1.0], [7.0]])
  assert float(batchnorm.mean_cosine_similarity(scaled)) == pytest.approx(1.0, abs=1e-6)
  # Opposite rows: -1.
  opposite = np.stack([row, -row])
  assert float(batchnorm.mean_cosine_similarity(opposite)) == pytest.approx(-1.0, abs=1e-6)
  h = np.random.default_rng(0).normal(size=(9, 5))
  h[3] = 0.0  # a dead representation
  assert float(batchnorm.mean_cosine_similarity(h)) == pytest.approx(_cosine_reference(h), abs=1e-5)
  assert float(jax.jit(batchnorm.mean_cosine_similarity)(h)) == pytest.approx(_cosine_reference(h),
                                                                               abs=1e-5)


def test_variance_fraction_constructed_and_reference():
  rng = np.random.default_rng(1)
  # Every unit constant over the inputs (rows identical), units differ: no between-input share.
  unit_means = rng.normal(size=7)
  assert float(batchnorm.input_variance_fraction(np.tile(unit_means, (5, 1)))) == pytest.approx(0.0)
  # All units share one mean (zero): all variance is between inputs.
  h = rng.normal(size=(400, 6))
  h -= h.mean(axis=0)
  assert float(batchnorm.input_variance_fraction(h)) == pytest.approx(1.0, abs=1e-6)
  # Reference: law of total variance, each term computed directly in float64.
  h = rng.normal(size=(50, 8)) * rng.uniform(0.1, 3, size=8) + rng.normal(size=8) * 4
  within = np.mean([np.mean((h[:, d] - h[:, d].mean()) ** 2) for d in range(h.shape[1])])
  between_units = np.mean((h.mean(axis=0) - h.mean()) ** 2)
  total = np.mean((h - h.mean()) ** 2)
  assert within + between_units == pytest.approx(total, rel=1e-10)  # the decomposition itself
  assert float(batchnorm.input_variance_fraction(h)) == pytest.approx(within / total, rel=1e-5)
  # unit_rows: inputs that differ only in scale are identical in direction.
  scaled = unit_means[None] * rng.uniform(0.5, 2.0, size=(10, 1))
  assert float(batchnorm.input_variance_fraction(scaled)) > 0.01
  direction_share = float(batchnorm.input_variance_fraction(scaled, unit_rows=True))
  assert direction_share == pytest.approx(0.0, abs=1e-6)
  assert float(batchnorm.input_variance_fraction(np.zeros((3, 4)))) == 0.0


def test_argmax_concentration():
  logits = np.zeros((10, 4))
  classes = [2, 2, 1, 2, 2, 0, 2, 2, 3, 2]  # 7 of 10 pick class 2
  logits[np.arange(10), classes] = 1.0
  fraction, cls = batchnorm.argmax_concentration(logits)
  assert float(fraction) == pytest.approx(0.7) and int(cls) == 2
  logits = np.random.default_rng(2).normal(size=(200, 10))
  counts = np.bincount(logits.argmax(1), minlength=10)
  fraction, cls = jax.jit(batchnorm.argmax_concentration)(logits)
  assert float(fraction) == pytest.approx(counts.max() / 200) and int(cls) == counts.argmax()


@pytest.mark.parametrize("fn", [batchnorm.mean_cosine_similarity, batchnorm.input_variance_fraction,
                                batchnorm.argmax_concentration])
def test_metrics_reject_bad_shapes(fn):
  with pytest.raises(ValueError, match="shape"):
    fn(np.zeros(5))


def test_bn_at_init_normalizes_every_unit_numpy_reference():
  """Train-mode BN: each layer's pre-activations are standardized over the batch; the whole
  forward pass (Dense without bias, BN with scale 1 / offset 0, ReLU) recomputed in NumPy."""
  depth, width = 4, 16
  x = np.random.default_rng(3).normal(size=(32, 12)) * 3.0 + 1.0
  model = batchnorm.DeepMLP(depth=depth, width=width, num_classes=5, norm="batch")
  variables = model.init(jax.random.key(0), jnp.asarray(x[:2]), train=False)
  hidden, logits = batchnorm.hidden_activations(model, variables, jnp.asarray(x), train=True)
  params = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
  h = x
  for i in range(depth):
    z = h @ params[f"Dense_{i}"]["kernel"]
    z_hat = (z - z.mean(axis=0)) / np.sqrt(z.var(axis=0) + EPS)
    np.testing.assert_allclose(z_hat.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(z_hat.std(axis=0), 1.0, atol=1e-3)  # eps is 1e-5 of var ~ O(1)
    z_hat = z_hat * params[f"BatchNorm_{i}"]["scale"] + params[f"BatchNorm_{i}"]["bias"]
    h = np.maximum(z_hat, 0.0)
    np.testing.assert_allclose(np.asarray(hidden[i]), h, atol=2e-4)
    # ReLU of a standardized unit: its mean over the batch is E[max(z, 0)] <= 1/sqrt(2 pi) ~ 0.40
    # on average; every unit varies across the batch.
    assert np.all(np.asarray(hidden[i]).std(axis=0) > 0.1)
  out = h @ params[f"Dense_{depth}"]["kernel"] + params[f"Dense_{depth}"]["bias"]
  np.testing.assert_allclose(np.asarray(logits), out, atol=5e-4)


def _arccos_map(c):
  """Cosine of ReLU(W u), ReLU(W v) for Gaussian W as width -> infinity (Cho & Saul 2009)."""
  return (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi


@pytest.mark.parametrize("c0", [0.0, 0.5])
def test_one_relu_layer_follows_the_arccos_map(c0):
  u = np.array([1.0, 0.0, 0.0])
  v = np.array([c0, math.sqrt(1 - c0 * c0), 0.0])
  model = batchnorm.DeepMLP(depth=1, width=20_000, norm="none")
  variables = model.init(jax.random.key(4), jnp.zeros((1, 3)), train=False)
  hidden, _ = batchnorm.hidden_activations(model, variables, jnp.asarray(np.stack([u, v])),
                                           train=False)
  cos = float(batchnorm.mean_cosine_similarity(hidden[0]))
  assert cos == pytest.approx(_arccos_map(c0), abs=0.02)  # ~1/sqrt(width) sampling error


def test_depth_without_bn_makes_inputs_alike_and_init_scale_does_not_matter():
  """Homogeneity: a bias-free ReLU net with lecun_normal weights (std 1/sqrt(fan_in)) computes
  the kaiming_normal net (std sqrt(2/fan_in)) on the same draws times 2**(-l/2) at layer l, so
  the cosine similarity is the same and the scale shrinks by exactly sqrt(2) per layer."""
  depth = 12
  x = jnp.asarray(np.random.default_rng(5).normal(size=(64, 20)))
  out = {}
  for init in ("kaiming_normal", "lecun_normal"):
    model = batchnorm.DeepMLP(depth=depth, width=64, norm="none", kernel_init=init)
    out[init] = batchnorm.init_analysis(model, jax.random.key(6), x)
  k, l = out["kaiming_normal"], out["lecun_normal"]
  np.testing.assert_allclose(l["cosine"], k["cosine"], atol=1e-5)
  for i in (0, depth // 2, depth - 1):
    ratio = np.linalg.norm(l["hidden"][i]) / np.linalg.norm(k["hidden"][i])
    assert ratio == pytest.approx(2.0 ** (-(i + 1) / 2), rel=1e-4)
  assert k["input_cosine"] == pytest.approx(_cosine_reference(np.asarray(x)), abs=1e-5)
  assert k["cosine"][-1] > 0.9 and k["cosine"][-1] > k["cosine"][0] + 0.2
  bn = batchnorm.init_analysis(batchnorm.DeepMLP(depth=depth, width=64, norm="batch"),
                               jax.random.key(6), x)
  assert bn["cosine"][-1] < 0.5 and bn["direction_variance_fraction"][-1] > 0.9


def _tiny_source():
  rng = np.random.default_rng(7)
  data = {s: {"image": rng.integers(0, 256, size=(n, 4, 4, 1), dtype=np.uint8),
              "label": rng.integers(0, 3, size=n).astype(np.int32)}
          for s, n in (("train", 48), ("test", 30))}
  return data, sources.InMemory(data, shared_order=True)


def test_train_grid_cell_zero_rate_keeps_the_init_and_huge_rate_diverges():
  data, source = _tiny_source()
  pre = preprocessing.fit("standardize", data["train"]["image"])
  model = batchnorm.DeepMLP(depth=2, width=8, num_classes=3, norm="none")
  cell = batchnorm.train_grid_cell(model, source, transform=pre, learning_rates=(0.0, 1e6),
                                   batch_size=8, num_epochs=2, momentum=0.9, seed=0)
  assert cell.test_accuracy.shape == (2, 2)
  # lr 0: the model stays at its init; test accuracy equals that of the init model (computed here:
  # seed 0 -> (model key, data key); the model key -> (init key, dropout key, step rng)).
  model_key = jax.random.split(jax.random.PRNGKey(0))[0]
  init_key, dropout_key, _ = jax.random.split(model_key, 3)
  variables = model.init({"params": init_key, "dropout": dropout_key}, jnp.zeros((1, 4, 4, 1)),
                         train=False)
  logits = model.apply(variables, pre(jnp.asarray(data["test"]["image"])), train=False)
  accuracy = np.mean(np.asarray(logits).argmax(1) == data["test"]["label"])
  np.testing.assert_allclose(cell.test_accuracy[:, 0], accuracy, atol=1e-6)
  # The huge rate diverges and is recorded as such; the other model is unaffected.
  assert cell.finite[-1, 0] and not cell.finite[-1, 1]
  np.testing.assert_array_equal(cell.diverged, [False, True])
  rows = batchnorm.training_rows(cell)
  assert [r["diverged"] for r in rows] == [False, True]
  assert rows[1]["test_accuracy"] is None and rows[0]["test_accuracy"] == pytest.approx(accuracy)
  with pytest.raises(ValueError, match="shared_order"):
    batchnorm.train_grid_cell(model, sources.InMemory(data), transform=pre, learning_rates=(0.1,),
                              batch_size=8, num_epochs=1, momentum=0.9, seed=0)


def test_grid_cell_rate_i_equals_a_one_model_run_at_rate_i():
  """Stacking is independent: the population's model i trains as a population of one at
  learning rate i (same seed, same batches), BatchNorm and its running averages included."""
  data, source = _tiny_source()
  pre = preprocessing.fit("standardize", data["train"]["image"])
  model = batchnorm.DeepMLP(depth=2, width=8, num_classes=3, norm="batch")
  rates = (0.01, 0.1, 0.5)
  grid = batchnorm.train_grid_cell(model, source, transform=pre, learning_rates=rates,
                                   batch_size=8, num_epochs=2, momentum=0.9, seed=3)
  # The two one-model runs share one population (the second reuses its compiled programs, as
  # batchnorm.run does across batch sizes).
  single = batchnorm.grid_population(model, transform=pre, num_models=1, momentum=0.9)
  for i in (0, 2):
    one = batchnorm.train_grid_cell(model, source, transform=pre, learning_rates=rates[i:i + 1],
                                    batch_size=8, num_epochs=2, momentum=0.9, seed=3,
                                    population=single)
    for name in ("train_loss", "train_accuracy", "test_loss", "test_accuracy",
                 "test_concentration"):
      np.testing.assert_allclose(getattr(one, name)[:, 0], getattr(grid, name)[:, i],
                                 rtol=1e-4, atol=1e-5, err_msg=name)
  assert not np.allclose(grid.train_loss[:, 0], grid.train_loss[:, 2])
  with pytest.raises(ValueError, match="population has 1 copies"):
    batchnorm.train_grid_cell(model, source, transform=pre, learning_rates=rates, batch_size=8,
                              num_epochs=2, momentum=0.9, seed=3, population=single)


def test_epoch_means_and_finite_by_epoch():
  steps = np.array([[1.0, 1.0], [3.0, np.nan], [5.0, 2.0], [7.0, 2.0]])
  np.testing.assert_allclose(batchnorm.epoch_means(steps[:, :1], 2), [[2.0], [6.0]])
  finite = batchnorm.finite_by_epoch(steps, np.ones((2, 2)), 2)
  np.testing.assert_array_equal(finite, [[True, False], [True, False]])  # stays diverged
  finite = batchnorm.finite_by_epoch(np.ones((4, 2)), [[1.0, 1.0], [np.inf, 1.0]], 2)
  np.testing.assert_array_equal(finite, [[True, True], [False, True]])
  with pytest.raises(ValueError, match="whole epochs"):
    batchnorm.epoch_means(np.ones(5), 2)


# -m slow: notebooks/05_batchnorm.ipynb runs this study's quick setting end to end in the fast suite
# (tests/test_studies_run.py); this checks the report's contents at a smaller one.
@pytest.mark.slow
def test_quick_run_writes_table_and_figures(tmp_path):
  config = common.load_config(CONFIGS / "batchnorm.py", "quick")
  config.init.depth = 3
  config.init.layers_shown = (1, 3)
  config.train.depth = 2
  config.train.batch_sizes = (4,)
  config.train.learning_rates = (0.01, 10.0)
  results = batchnorm.run(config, str(tmp_path))
  names = {p.name for p in pathlib.Path(tmp_path).iterdir()}
  assert {"batchnorm.md", "histograms.png", "constancy.png", "predictions.png",
          "training_accuracy.png", "training_loss.png"} <= names
  text = (tmp_path / "batchnorm.md").read_text()
  assert "## 1. A 3-layer ReLU MLP at initialization" in text and "| BN | 4 | 0.01 |" in text
  assert "results.json" in names
  assert len(results.training) == 2 * 1 * 2 and len(results.cells) == 2
  assert set(results.init) == {"no BN", "BN"}
  saved = json.loads((tmp_path / "results.json").read_text())
  assert len(saved["training"]) == 4 and saved["cells"][0]["batch_size"] == 4


def test_predicted_cosine_iterates_the_arccos_map():
  assert batchnorm.relu_cosine_map(np.array([0.0, 0.5, 1.0])) == pytest.approx(
      [1 / math.pi, _arccos_map(0.5), 1.0])
  x = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])  # pair cosines 0, 1/sqrt2, 1/sqrt2
  pred = batchnorm.predicted_cosine(x, 3)
  pairs = np.array([0.0, 2 ** -0.5, 2 ** -0.5])
  for l in range(3):
    pairs = np.array([_arccos_map(c) for c in pairs])
    assert pred[l] == pytest.approx(pairs.mean(), rel=1e-12)
  assert np.all(np.diff(pred) > 0)
