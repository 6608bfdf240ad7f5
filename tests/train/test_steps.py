"""The train and eval steps: learning, jit-once with donation, vmap over models, bf16, EMA, and
the fitted transform passed as an argument."""

import dataclasses
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn.models import create_model
from jaxcnn.train.state import create_train_state, make_init
from jaxcnn.train.steps import make_eval_step, make_train_step


def _batch(n=32, seed=0, classes=4):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, classes, n).astype(np.int32)
  # Class-dependent bright square on noise: learnable in a few steps.
  images = rng.integers(0, 60, (n, 8, 8, 1))
  for i, y in enumerate(labels):
    images[i, 2 * y:2 * y + 2, :, 0] += 150
  return {"image": jnp.asarray(images, jnp.uint8), "label": jnp.asarray(labels)}


def _scale(x):
  return x.astype(jnp.float32) / 255.0


def test_train_step_reduces_loss_and_eval_agrees():
  model = create_model("simple_cnn_small", num_classes=4)
  tx = optax.sgd(0.1, momentum=0.9)
  state = create_train_state(model, tx, jax.random.PRNGKey(0), (8, 8, 1))
  step = make_train_step(model, tx, preprocess=_scale)
  batch = _batch()
  losses = []
  for _ in range(30):
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
  assert int(state.step) == 30
  assert losses[-1] < 0.3 * losses[0]
  eval_step = make_eval_step(model, preprocess=_scale)
  sums = eval_step(state, {**batch, "mask": jnp.ones(32)})
  assert float(sums["count"]) == 32
  assert float(sums["correct"]) / 32 > 0.75
  # A padded example (mask 0) does not count.
  mask = jnp.ones(32).at[0].set(0.0)
  sums0 = eval_step(state, {**batch, "mask": mask})
  assert float(sums0["count"]) == 31


class Counting(nn.Module):
  """Dense classifier with BatchNorm that counts how often it is traced."""

  num_classes: int = 4
  traces = [0]

  @nn.compact
  def __call__(self, x, *, train):
    Counting.traces[0] += 1
    x = nn.BatchNorm(use_running_average=not train)(x.reshape(x.shape[0], -1))
    return nn.Dense(self.num_classes)(x)


def test_step_compiles_once_and_donates_the_state():
  model = Counting()
  tx = optax.adam(1e-2)
  state = create_train_state(model, tx, jax.random.PRNGKey(0), (8, 8, 1))
  Counting.traces[0] = 0
  step = make_train_step(model, tx, preprocess=_scale)
  for i in range(5):
    old = state
    state, _ = step(state, _batch(seed=i))
    assert old.params["Dense_0"]["kernel"].is_deleted()  # buffers were donated
  assert Counting.traces[0] == 1
  assert int(state.step) == 5
  # Batch statistics are updated explicitly.
  assert not np.allclose(state.batch_stats["BatchNorm_0"]["mean"], 0.0)


def test_per_step_randomness_is_fold_in_of_step():
  keys = []

  def augment(key, images):  # records the augmentation key of each step
    jax.debug.callback(lambda k: keys.append(np.asarray(k)), key, ordered=True)
    return images

  model = create_model("simple_cnn_small", num_classes=4)
  tx = optax.sgd(0.0)
  state = create_train_state(model, tx, jax.random.PRNGKey(0), (8, 8, 1))
  rng = np.asarray(state.rng)
  step = make_train_step(model, tx, augment=augment, preprocess=_scale)
  for _ in range(3):
    state, _ = step(state, _batch())
  jax.effects_barrier()
  assert len(keys) == 3
  for s, key in enumerate(keys):
    expected = jax.random.split(jax.random.fold_in(rng, s))[0]
    np.testing.assert_array_equal(key, np.asarray(expected))


def test_two_model_step_equals_two_runs():
  model = create_model("simple_cnn_small", num_classes=4)
  tx = optax.sgd(0.05, momentum=0.9)
  keys = [jax.random.PRNGKey(1), jax.random.PRNGKey(2)]
  batches = [_batch(seed=s) for s in range(3)]
  singles = []
  step = make_train_step(model, tx, preprocess=_scale)
  init = make_init(model, tx, (8, 8, 1))  # create_train_state's program, built once
  for m, key in enumerate(keys):
    state = init(key)
    for t in range(3):
      state, metrics = step(state, batches[(t + m) % 3])
    singles.append((state, metrics))
  stacked = jax.vmap(init)(jnp.stack(keys))
  vstep = make_train_step(model, tx, preprocess=_scale, num_models=2)
  for t in range(3):
    both = jax.tree.map(lambda a, b: jnp.stack([a, b]), batches[t % 3], batches[(t + 1) % 3])
    stacked, vmetrics = vstep(stacked, both)
  for m, (state, metrics) in enumerate(singles):
    np.testing.assert_allclose(vmetrics["loss"][m], metrics["loss"], rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[m], b, rtol=1e-4, atol=1e-6),
                 stacked.params, state.params)
  assert not np.allclose(vmetrics["loss"][0], vmetrics["loss"][1])


def _population_step_text(monkeypatch, backend):
  model = create_model("simple_cnn_small", num_classes=4)
  tx = optax.sgd(0.05)
  monkeypatch.setattr(jax, "default_backend", lambda: backend)  # read when the step is traced
  step = make_train_step(model, tx, preprocess=_scale, num_models=2)
  stacked = jax.vmap(make_init(model, tx, (8, 8, 1)))(jnp.stack([jax.random.PRNGKey(1),
                                                                  jax.random.PRNGKey(2)]))
  both = jax.tree.map(lambda a: jnp.stack([a, a]), _batch())
  return step.lower(stacked, both).as_text()


def test_population_step_loops_over_models_on_cpu_and_vmaps_elsewhere(monkeypatch):
  """On CPU the models' convolutions run one model at a time inside the step (a while loop over
  the model axis); vmap would batch them into grouped convolutions, which XLA:CPU runs slowly."""
  cpu = _population_step_text(monkeypatch, "cpu")
  assert "stablehlo.while" in cpu
  assert "feature_group_count = 2" not in cpu and "feature_group_count = 1" in cpu
  other = _population_step_text(monkeypatch, "gpu")  # traced here on CPU, lowered to text only
  assert "stablehlo.while" not in other and "feature_group_count = 2" in other


def test_over_models_rejects_other_axes():
  from jaxcnn.train.steps import over_models  # pylint: disable=g-import-not-at-top

  with pytest.raises(ValueError, match="in_axes must be 0 or None"):
    over_models(lambda x: x, 2, (1,))


def test_bfloat16_compute_keeps_float32_state_and_learns():
  model = create_model("simple_cnn_small", num_classes=4)
  tx = optax.sgd(0.1, momentum=0.9)
  state = create_train_state(model, tx, jax.random.PRNGKey(0), (8, 8, 1))
  step = make_train_step(model, tx, preprocess=_scale, compute_dtype=jnp.bfloat16)
  first = None
  for _ in range(20):
    state, metrics = step(state, _batch())
    first = first if first is not None else float(metrics["loss"])
  assert float(metrics["loss"]) < 0.5 * first
  dtypes = {x.dtype for x in jax.tree.leaves((state.params, state.batch_stats, state.opt_state))}
  assert dtypes == {jnp.dtype(jnp.float32)}


def test_ema_of_weights_follows_formula():
  model = create_model("simple_cnn_small", num_classes=4)
  tx = optax.sgd(0.1)
  state = create_train_state(model, tx, jax.random.PRNGKey(0), (8, 8, 1), ema=True)
  p0 = jax.tree.map(np.asarray, state.params)
  step = make_train_step(model, tx, preprocess=_scale, ema_decay=0.9)
  state, _ = step(state, _batch())
  jax.tree.map(lambda e, a, b: np.testing.assert_allclose(e, 0.9 * a + 0.1 * np.asarray(b),
                                                          rtol=1e-5, atol=1e-7),
               state.ema_params, p0, state.params)


def test_fitted_transform_is_an_argument_not_a_compiled_constant():
  from jaxcnn.data import preprocessing
  rng = np.random.default_rng(0)
  zca = preprocessing.fit("zca", rng.integers(0, 256, (300, 8, 8, 1)).astype(np.uint8))
  other = preprocessing.fit("zca", rng.integers(0, 100, (300, 8, 8, 1)).astype(np.uint8))
  model, tx = Counting(), optax.sgd(0.1)
  init = make_init(model, tx, (8, 8, 1))  # create_train_state's program, built once
  new_state = lambda: init(jax.random.PRNGKey(0))
  batch = _batch()
  step = make_train_step(model, tx, preprocess=zca)
  # One compilation serves another transform of the same structure, and uses its values.
  first, second = new_state(), new_state()
  Counting.traces[0] = 0
  _, m_zca = step(first, batch)
  _, m_other = dataclasses.replace(step, preprocess=other)(second, batch)
  assert Counting.traces[0] == 1
  _, m_reference = make_train_step(model, tx, preprocess=lambda x: other(x))(new_state(), batch)
  np.testing.assert_allclose(m_other["loss"], m_reference["loss"], rtol=1e-5)
  assert not np.isclose(m_other["loss"], m_zca["loss"])
  constant = re.compile(r"dense<[^>]*> : tensor<64x64xf32>")  # a baked-in 64 x 64 matrix
  text = step.lower(new_state(), batch).as_text()
  main = next(line for line in text.splitlines() if "func.func public @main" in line)
  assert "tensor<64x64xf32>" in main and not constant.search(text)
  # Control: a closure over the transform does bake the matrix in.
  closure = make_train_step(model, tx, preprocess=lambda x: zca(x))
  assert constant.search(closure.lower(new_state(), batch).as_text())
  sums = make_eval_step(model, preprocess=zca)(new_state(), batch)
  assert float(sums["count"]) == 32


def test_shared_batch_step_equals_each_model_on_that_batch():
  model = create_model("simple_cnn_small", num_classes=4)
  tx = optax.sgd(0.05, momentum=0.9)
  keys = jnp.stack([jax.random.PRNGKey(1), jax.random.PRNGKey(2)])
  init = make_init(model, tx, (8, 8, 1))  # create_train_state's program, built once
  batch = _batch()
  stacked, vmetrics = make_train_step(model, tx, preprocess=_scale, num_models=2,
                                      shared_batch=True)(jax.vmap(init)(keys), batch)
  step = make_train_step(model, tx, preprocess=_scale)
  for m in range(2):
    _, metrics = step(init(keys[m]), batch)
    np.testing.assert_allclose(vmetrics["loss"][m], metrics["loss"], rtol=1e-5)
