"""Preprocessing study: gradients and training speed against independent formulas (the Hessian
eigenvalue, loss sensitivity and second moments are tested in tests/test_diagnostics.py)."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.data import preprocessing as prep
from jaxcnn.data import sources
from jaxcnn.studies import common
from jaxcnn.studies import preprocessing as study


CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "configs"


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


@pytest.mark.parametrize("act", ["identity", "sigmoid"])
def test_neuron_grads_are_upstream_times_input(act):
  rng = np.random.default_rng(0)
  x = rng.uniform(0.1, 2.0, size=(64, 3)).astype(np.float32)  # all positive
  y = rng.normal(size=64).astype(np.float32)
  w = np.array([0.5, -1.0, 0.3], np.float32)
  grads = np.asarray(study.neuron_grads(w, x, y, act))
  z = x.astype(np.float64) @ w
  if act == "identity":
    upstream = z - y
  else:
    s = _sigmoid(z)
    upstream = (s - y) * s * (1 - s)
  np.testing.assert_allclose(grads, upstream[:, None] * x, rtol=1e-4, atol=1e-6)
  # All-positive inputs: every component of one example's gradient has the upstream's sign.
  assert np.all(np.sign(grads) == np.sign(upstream)[:, None])
  assert study.same_sign_fraction(grads) == 1.0


def test_centered_inputs_give_mixed_signs():
  rng = np.random.default_rng(1)
  x = rng.uniform(0.0, 1.0, size=(400, 2)).astype(np.float32)
  xc = np.asarray(prep.fit("mean_image", x)(x))
  y = xc @ np.array([1.0, -1.0], np.float32)
  grads = study.neuron_grads(jnp.zeros(2), xc, y)
  # Two independent zero-mean components: one sign in both about half the time.
  assert 0.35 < study.same_sign_fraction(grads) < 0.65
  assert study.same_sign_fraction(np.array([[1.0, 2.0], [-1.0, -3.0], [1.0, -1.0], [0.0, -2.0]])) == 0.75
  with pytest.raises(ValueError, match="shape"):
    study.same_sign_fraction(np.zeros(3))
  with pytest.raises(ValueError, match="w \\(D,\\)"):
    study.neuron_grads(jnp.zeros(3), xc, y)


def test_descent_path_matches_numpy_gradient_descent():
  rng = np.random.default_rng(2)
  x = rng.uniform(0, 1, size=(20, 2)).astype(np.float32)
  y = x @ np.array([1.0, -1.0], np.float32)
  w, lr = np.zeros(2), 0.7
  expected = [w.copy()]
  for _ in range(5):
    w = w - lr * ((x @ w - y)[:, None] * x).mean(0)
    expected.append(w.copy())
  path = study.descent_path(jnp.zeros(2), x, y, jnp.float32(lr), jax.random.PRNGKey(0),
                            num_steps=5)
  np.testing.assert_allclose(np.asarray(path), np.array(expected), rtol=1e-5, atol=1e-6)
  assert study.steps_to_converge(np.array([[0.0, 0.0], [0.9, -0.9], [1.0, -1.0]]),
                                 [1.0, -1.0], tol=0.2) == 1
  assert study.steps_to_converge(np.array([[0.0, 0.0], [np.nan, np.inf]]), [1.0, -1.0], 0.1) is None


def test_sgd_steps_stay_in_the_positive_or_negative_quadrant():
  rng = np.random.default_rng(3)
  x = rng.uniform(0.2, 1.0, size=(50, 2)).astype(np.float32)
  y = x @ np.array([1.0, -1.0], np.float32)
  path = np.asarray(study.descent_path(jnp.zeros(2), x, y, jnp.float32(0.5),
                                       jax.random.PRNGKey(1), num_steps=30, batch_size=1))
  steps = np.diff(path, axis=0)
  steps = steps[np.abs(steps).max(1) > 1e-7]
  assert len(steps) > 10 and np.all(np.sign(steps[:, 0]) == np.sign(steps[:, 1]))


def test_best_run():
  steps = [0, 10, 20, 30]
  losses = np.array([[2.0, 1.0, 0.8, 0.6],      # never reaches 0.5
                     [2.0, 0.4, 0.3, 0.2],      # reaches at 10
                     [2.0, 0.45, 0.1, 0.05],    # reaches at 10 too, lower final loss
                     [2.0, np.nan, np.nan, np.nan]])
  assert study.best_run(steps, losses, 0.5) == 2
  assert study.best_run(steps, losses[[0, 3]], 0.5) == 0  # none reach: lowest final, NaN last


@pytest.fixture(scope="module")
def digits_source():
  splits = sources.subsets("digits", {"train": 64, "test": 40}, seed=0)
  splits["train_eval"] = splits["train"]
  return sources.InMemory(splits, shared_order=True)


def test_lr_sweep_trains_each_learning_rate_like_plain_sgd(digits_source):
  source = digits_source
  x01 = source.sample().astype(np.float32) / 255.0
  pre = prep.fit("standardize", x01)
  pixels = study.on_pixels(pre)
  np.testing.assert_allclose(np.asarray(pixels(source.sample())), np.asarray(pre(x01)),
                             rtol=1e-5, atol=1e-5)  # the same transform, on uint8 pixels
  model = study.classifier((), num_classes=10)
  lrs = [0.0, 0.1, 1.0]
  p0, state, hist = study.lr_sweep(model, pixels, source, lrs, num_steps=4, batch_size=32,
                                   eval_every=2, seed=5)
  assert hist["eval_steps"].tolist() == [0, 2, 4] and hist["train_eval_loss"].shape == (3, 3)
  assert hist["train_loss"].shape == (4, 3) and hist["test_accuracy"].shape == (3, 3)
  # Independent re-run with optax-free SGD on the same minibatches, per learning rate.
  loss = study.make_loss(model)
  # Jitted (one program each, not one per eager op): the reference is still plain SGD on loss.
  grad_fn, loss_fn = jax.jit(jax.grad(loss)), jax.jit(loss)
  data_key = jax.random.split(jax.random.PRNGKey(5))[1][None]
  batches = [next(source.train_batches(data_key, *divmod(step, 2), divmod(step, 2)[1] + 1, 32))
             for step in range(4)]
  x_all, y_all = pixels(source.splits["train"]["image"]), source.splits["train"]["label"]
  for i, lr in enumerate(lrs):
    p = p0
    for batch in batches:
      grads = grad_fn(p, pixels(batch["image"]), batch["label"])
      p = jax.tree.map(lambda a, g: a - lr * g, p, grads)
    got = jax.tree.map(lambda a: a[i], state.params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(p)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    assert hist["train_eval_loss"][-1, i] == pytest.approx(float(loss_fn(p, x_all, y_all)),
                                                          rel=1e-4)
  assert hist["train_eval_loss"][0, 0] == hist["train_eval_loss"][-1, 0]  # lr 0 does not move


def test_a_sweep_member_equals_a_one_model_run_and_divergence_is_recorded(digits_source):
  pixels = study.on_pixels(prep.fit("none", digits_source.sample().astype(np.float32) / 255.0))
  model = study.classifier((16,), num_classes=10)
  lrs = [0.05, 0.3, 1e30]  # the last one diverges to NaN/inf
  _, state, hist = study.lr_sweep(model, pixels, digits_source, lrs, num_steps=4, batch_size=32,
                                  eval_every=2, momentum=0.9, seed=1)
  _, one, one_hist = study.lr_sweep(model, pixels, digits_source, [lrs[1]], num_steps=4,
                                    batch_size=32, eval_every=2, momentum=0.9, seed=1)
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(one.params)):
    np.testing.assert_allclose(np.asarray(a)[1], np.asarray(b)[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(hist["train_eval_loss"][:, 1], one_hist["train_eval_loss"][:, 0],
                             rtol=1e-5)
  assert not np.isfinite(hist["train_eval_loss"][-1, 2])  # recorded, not raised
  assert study.best_run(hist["eval_steps"], hist["train_eval_loss"].T, 0.0) != 2


# -m slow: notebooks/03_preprocessing.ipynb runs this study's quick setting end to end in the fast suite
# (tests/test_studies_run.py); this checks the report's contents at a smaller one.
@pytest.mark.slow
def test_quick_run_writes_table_and_figures(tmp_path, monkeypatch):
  monkeypatch.delenv("JAXCNN_QUICK", raising=False)
  config = common.load_config(CONFIGS / "preprocessing.py", "quick")
  config.transforms = ("none", "mean_image")
  config.num_steps = 20
  config.eval_every = 10
  config.zigzag.num_lrs = 4
  config.zigzag.num_steps = 100
  config.zigzag.num_seeds = 2
  results = study.run(config, str(tmp_path))
  text = (tmp_path / "preprocessing.md").read_text()
  for heading in ("(a) Sensitivity", "(b) The zig-zag", "(c) Training speed"):
    assert heading in text
  for fig in results.figures:
    assert (tmp_path / fig).stat().st_size > 1000, fig
  assert set(results.transforms) == {"none", "mean_image"}
  assert results.zigzag["all positive"]["same_sign_fraction"] == 1.0
  # Centering removes the mean's large eigenvalue of E[x x^T].
  t = results.transforms
  assert t["mean_image"].eig_max < t["none"].eig_max
  linear = {spec: t[spec].models["linear"] for spec in t}
  assert linear["mean_image"].lambda_max_init < linear["none"].lambda_max_init
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["transforms"]["none"]["models"]["mlp"]["best_lr"] == t["none"].models["mlp"].best_lr
