"""Schedules, optimizer chains, the weight-decay mask and the loss, against hand formulas."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn.models import create_model
from jaxcnn.train import optim
from jaxcnn.train.steps import cross_entropy


def test_warmup_cosine_matches_formula():
  spe, epochs, lr = 10, 5, 0.4
  sched = optim.make_schedule({"name": "cosine", "warmup_epochs": 1.0}, learning_rate=lr,
                              steps_per_epoch=spe, num_epochs=epochs)
  warmup, total = 10, 50
  for step in (0, 3, 9, 10, 17, 30, 49, 50):
    if step < warmup:
      expected = lr * step / warmup
    else:
      expected = lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
    assert float(sched(step)) == pytest.approx(expected, rel=1e-5, abs=1e-7), step


def test_step_decay_with_warmup_matches_formula():
  sched = optim.make_schedule(
      {"name": "step", "warmup_epochs": 0.5, "decay_epochs": (3, 4), "decay_factor": 0.1},
      learning_rate=1.0, steps_per_epoch=10, num_epochs=5)
  expected = {0: 0.0, 2: 0.4, 5: 1.0, 29: 1.0, 30: 0.1, 39: 0.1, 40: 0.01, 49: 0.01}
  for step, value in expected.items():
    assert float(sched(step)) == pytest.approx(value, rel=1e-5), step


def test_linear_schedule_and_warmup_start_match_formula():
  """Warmup from 0.25 * lr to lr over 1 epoch (10 steps), then linearly to 0.1 at step 50."""
  lr = 2.0
  sched = optim.make_schedule({"name": "linear", "warmup_epochs": 1.0, "warmup_start": 0.25,
                               "end_learning_rate": 0.1}, learning_rate=lr,
                              steps_per_epoch=10, num_epochs=5)
  expected = {0: 0.5, 4: 0.5 + 1.5 * 4 / 10, 10: 2.0, 30: 2.0 + (0.1 - 2.0) * 20 / 40, 50: 0.1,
              60: 0.1}
  for step, value in expected.items():
    assert float(sched(step)) == pytest.approx(value, rel=1e-5), step
  cosine = optim.make_schedule({"name": "cosine", "warmup_epochs": 1.0, "warmup_start": 0.5},
                               learning_rate=lr, steps_per_epoch=10, num_epochs=5)
  assert float(cosine(0)) == pytest.approx(1.0) and float(cosine(5)) == pytest.approx(1.5)
  with pytest.raises(ValueError, match="shorter than the run"):
    optim.make_schedule({"name": "linear", "warmup_epochs": 5.0}, learning_rate=lr,
                        steps_per_epoch=10, num_epochs=5)


def test_constant_schedule_and_unknown_names():
  sched = optim.make_schedule({"name": "constant"}, learning_rate=0.3, steps_per_epoch=5,
                              num_epochs=2)
  assert float(sched(7)) == pytest.approx(0.3)
  with pytest.raises(ValueError, match="Known schedules"):
    optim.make_schedule({"name": "onecycle"}, learning_rate=1.0, steps_per_epoch=1, num_epochs=1)
  with pytest.raises(ValueError, match="Known optimizers"):
    optim.make_optimizer({"name": "lion"}, 0.1)


def _params():
  model = create_model("simple_cnn_small", num_classes=3)
  return model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)), train=False)["params"]


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_weight_decay_only_on_kernels(name):
  params = _params()
  lr, wd = 0.1, 0.01
  tx = optim.make_optimizer({"name": name, "momentum": 0.9, "weight_decay": wd}, lr)
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  upd = dict(jax.tree_util.tree_flatten_with_path(updates)[0])
  kinds = set()
  for path, p in flat:
    name_ = jax.tree_util.keystr(path)
    u = np.asarray(upd[path])
    if p.ndim >= 2:  # kernels decay
      kinds.add("kernel")
      if name == "sgd":  # -lr * wd * w exactly (first step, zero momentum buffer)
        np.testing.assert_allclose(u, -lr * wd * np.asarray(p), rtol=1e-5, atol=1e-9)
      elif name == "adamw":  # decoupled: -lr * wd * w, Adam of zero gradients is zero
        np.testing.assert_allclose(u, -lr * wd * np.asarray(p), rtol=1e-5, atol=1e-9)
      else:  # adam rescales the L2 gradient: -lr * sign(w) (first step, |m|/sqrt(v) = 1)
        big = np.abs(np.asarray(p)) * wd > 1e-4
        np.testing.assert_allclose(u[big], -lr * np.sign(np.asarray(p))[big], rtol=1e-3)
    else:  # biases and norm scales do not
      kinds.add("scale" if "scale" in name_ else "bias")
      np.testing.assert_array_equal(u, 0.0)
  assert kinds == {"kernel", "scale", "bias"}


def test_gradient_clipping_bounds_the_update():
  params = {"w": jnp.ones((4, 4))}
  tx = optim.make_optimizer({"name": "sgd", "grad_clip_norm": 1.0}, 1.0)
  grads = {"w": jnp.full((4, 4), 10.0)}
  updates, _ = tx.update(grads, tx.init(params), params)
  assert float(optax.global_norm(updates)) == pytest.approx(1.0, rel=1e-5)


def test_nesterov_momentum_matches_formula():
  # PyTorch/optax Nesterov: v = mu v + g; update = -lr (g + mu v).
  params = {"w": jnp.zeros(())}
  tx = optim.make_optimizer({"name": "sgd", "momentum": 0.9, "nesterov": True}, 0.1)
  state = tx.init(params)
  v, expected = 0.0, []
  for g in (1.0, 2.0, -1.0):
    v = 0.9 * v + g
    expected.append(-0.1 * (g + 0.9 * v))
    updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
    assert float(updates["w"]) == pytest.approx(expected[-1], rel=1e-6)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_matches_numpy(smoothing):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(6, 5)).astype(np.float32) * 3
  labels = rng.integers(0, 5, size=6)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  k = logits.shape[1]
  expected = []
  for i, y in enumerate(labels):
    others = np.delete(logp[i], y).sum()
    expected.append(-(1 - smoothing + smoothing / k) * logp[i, y] - smoothing / k * others)
  got = cross_entropy(jnp.asarray(logits), jnp.asarray(labels), label_smoothing=smoothing)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)


def test_learning_rate_times_schedule_and_hyperparameters_in_the_state():
  schedule = lambda count: 0.1 * (count + 1)
  tx = optim.make_optimizer({"name": "sgd"}, 0.5, schedule=schedule)
  params = {"w": jnp.zeros((2, 2))}
  state = tx.init(params)
  g = {"w": jnp.full((2, 2), 3.0)}
  for count in range(3):  # update = -learning_rate * schedule(count) * g
    updates, state = tx.update(g, state, params)
    np.testing.assert_allclose(updates["w"], -0.5 * 0.1 * (count + 1) * 3.0, rtol=1e-6)
  assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.5)
  state = optim.set_hyperparams(state, learning_rate=2.0)
  updates, _ = tx.update(g, state, params)
  np.testing.assert_allclose(updates["w"], -2.0 * 0.1 * 4 * 3.0, rtol=1e-6)
  with pytest.raises(ValueError, match="Unknown hyperparameter 'momentum'"):
    optim.set_hyperparams(state, momentum=0.9)
  with pytest.raises(TypeError, match="schedule="):
    optim.make_optimizer({"name": "sgd"}, schedule)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_vmapped_stack_with_per_model_learning_rate_and_weight_decay(name):
  # Zero gradients: the update is the weight decay alone, -lr * wd * w, per model.
  tx = optim.make_optimizer({"name": name, "weight_decay": 0.0}, 1.0)
  params = {"w": jnp.full((3, 3), 2.0)}
  stacked = jax.tree.map(lambda a: jnp.stack([a, a]), params)
  state = optim.set_hyperparams(jax.vmap(tx.init)(stacked), learning_rate=jnp.array([0.1, 0.3]),
                                weight_decay=jnp.array([0.01, 0.2]))
  zeros = jax.tree.map(jnp.zeros_like, stacked)
  updates, _ = jax.vmap(tx.update)(zeros, state, stacked)
  for m, (lr, wd) in enumerate([(0.1, 0.01), (0.3, 0.2)]):
    np.testing.assert_allclose(updates["w"][m], -lr * wd * 2.0, rtol=1e-5)


def test_freeze_updates_only_the_trainable_modules():
  """A step of freeze(sgd) equals plain SGD on the head and leaves the backbone unchanged."""
  params = {"conv": {"kernel": jnp.ones((3, 3, 2, 4)), "bias": jnp.ones(4)},
            "head": {"kernel": jnp.full((4, 2), 2.0), "bias": jnp.zeros(2)}}
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
  labels = optim.freeze_labels(params, ("head",))
  assert labels == {"conv": {"kernel": "frozen", "bias": "frozen"},
                    "head": {"kernel": "trainable", "bias": "trainable"}}
  opt = optim.freeze(optim.make_optimizer({"name": "sgd", "weight_decay": 0.1}, 0.1), ("head",))
  state = opt.init(params)
  updates, state = opt.update(grads, state, params)
  new = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(new["conv"]["kernel"], params["conv"]["kernel"])
  np.testing.assert_array_equal(new["conv"]["bias"], params["conv"]["bias"])
  # SGD with L2 decay on kernels (rank >= 2): p - lr * (g + wd * p)
  np.testing.assert_allclose(new["head"]["kernel"], 2.0 - 0.1 * (0.5 + 0.1 * 2.0), rtol=1e-6)
  np.testing.assert_allclose(new["head"]["bias"], -0.1 * 0.5, rtol=1e-6)


def test_make_optimizer_trainable_freezes_inside_the_injected_hyperparameters():
  params = {"conv": {"kernel": jnp.ones((3, 3, 2, 4))}, "head": {"kernel": jnp.full((4, 2), 2.0)}}
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
  opt = optim.make_optimizer({"name": "sgd"}, 0.1, trainable=("head",))
  state = optim.set_hyperparams(opt.init(params), learning_rate=0.2)  # still at the top
  updates, _ = opt.update(grads, state, params)
  new = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(new["conv"]["kernel"], params["conv"]["kernel"])
  np.testing.assert_allclose(new["head"]["kernel"], 2.0 - 0.2 * 0.5, rtol=1e-6)


def test_freeze_labels_paths_predicates_and_errors():
  params = {"stage1": {"conv": {"kernel": jnp.ones(2)}}, "stage2": {"conv": {"kernel": jnp.ones(2)}},
            "head": {"kernel": jnp.ones(2)}}
  labels = optim.freeze_labels(params, ["stage2/conv", "head"])
  assert labels["stage1"]["conv"]["kernel"] == "frozen"
  assert labels["stage2"]["conv"]["kernel"] == labels["head"]["kernel"] == "trainable"
  by_predicate = optim.freeze_labels(params, lambda path: path[-1] == "kernel" and
                                     path[0] == "stage1")
  assert by_predicate["stage1"]["conv"]["kernel"] == "trainable"
  assert by_predicate["head"]["kernel"] == "frozen"
  with pytest.raises(ValueError, match="No parameter matches.*'fc'.*'head'"):
    optim.freeze_labels(params, ("fc",))
  with pytest.raises(ValueError, match="at least one trainable"):
    optim.freeze_labels(params, ())


def test_freeze_from_step_trains_then_stops_the_frozen_parameters():
  """freeze(..., from_step=2): plain SGD with momentum on every parameter for two updates, then
  the frozen bias stops where it was while the kernel goes on as plain SGD."""
  params = {"conv": {"kernel": jnp.full((2, 2), 1.0), "bias": jnp.full((2,), 1.0)}}
  grad = lambda p: jax.tree.map(lambda x: 0.5 * x, p)  # noqa: E731
  base = lambda: optim.make_optimizer({"name": "sgd", "momentum": 0.9}, 0.1)  # noqa: E731
  frozen = optim.freeze(base(), lambda path: path[-1] == "kernel", from_step=2)
  plain = base()
  p_frozen, p_plain = params, params
  s_frozen, s_plain = frozen.init(params), plain.init(params)
  history = []
  for _ in range(4):
    u, s_frozen = frozen.update(grad(p_frozen), s_frozen, p_frozen)
    p_frozen = optax.apply_updates(p_frozen, u)
    u, s_plain = plain.update(grad(p_plain), s_plain, p_plain)
    p_plain = optax.apply_updates(p_plain, u)
    history.append(float(p_frozen["conv"]["bias"][0]))
  # By hand: p1 = 1 - 0.1 * 0.5 = 0.95; m2 = 0.9 * 0.5 + 0.475 = 0.925, p2 = 0.95 - 0.0925.
  np.testing.assert_allclose(history, [0.95, 0.8575, 0.8575, 0.8575], rtol=1e-6)
  np.testing.assert_allclose(p_frozen["conv"]["kernel"], p_plain["conv"]["kernel"], rtol=1e-6)
  assert float(p_plain["conv"]["bias"][0]) < 0.8575 - 0.05  # it would have moved on
  with pytest.raises(ValueError, match="from_step"):
    optim.freeze(base(), ("conv",), from_step=-1)
  with pytest.raises(ValueError, match="No parameter matches"):
    optim.freeze(base(), ("head",), from_step=3).init(params)


def test_decay_biases_decays_every_parameter():
  params = jax.tree.map(lambda p: p + 1.0, _params())  # no zero biases: each decay is seen
  tx = optim.make_optimizer({"name": "sgd", "weight_decay": 0.01, "decay_biases": True}, 0.1)
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  for p, u in zip(jax.tree.leaves(params), jax.tree.leaves(updates)):
    np.testing.assert_allclose(u, -0.1 * 0.01 * np.asarray(p), rtol=1e-5, atol=1e-12)
