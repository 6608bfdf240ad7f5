"""Lookahead averaging against its formula, step by step in NumPy; the train step's lookahead
against plain steps with the averaging done by hand; a population of two as two runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.data import sources
from jaxcnn.models import create_model
from jaxcnn.train import lookahead
from jaxcnn.train.optim import make_optimizer
from jaxcnn.train.population import Population
from jaxcnn.train.state import TrainState


def _state(params, stats, opt=1.0):
  return TrainState(step=jnp.array(7, jnp.int32), params=params, batch_stats=stats,
                    opt_state={"momentum": jnp.full((2,), opt)}, rng=jnp.zeros(2, jnp.uint32))


def test_update_follows_the_formula_and_resets_the_fast_weights():
  rng = np.random.default_rng(0)
  a, b, c = (rng.normal(size=(2, 3)).astype(np.float32) for _ in range(3))
  mean = rng.normal(size=(3,)).astype(np.float32)
  state = _state({"w": jnp.asarray(a)}, {"bn": {"mean": jnp.asarray(mean)},
                                          "fitted": jnp.array(True)})
  slow = lookahead.init(state)
  # Train: the fast weights move to b; then one lookahead step with decay 0.6.
  state = state.replace(params={"w": jnp.asarray(b)},
                        batch_stats={"bn": {"mean": jnp.asarray(2 * mean)},
                                     "fitted": jnp.array(False)})
  state, slow = lookahead.update(state, slow, 0.6)
  want = 0.6 * a + 0.4 * b
  np.testing.assert_allclose(slow["params"]["w"], want, rtol=1e-6)
  np.testing.assert_allclose(state.params["w"], want, rtol=1e-6)
  np.testing.assert_allclose(state.batch_stats["bn"]["mean"], 0.6 * mean + 0.8 * mean, rtol=1e-6)
  assert not bool(state.batch_stats["fitted"]) and not bool(slow["batch_stats"]["fitted"])
  np.testing.assert_array_equal(state.opt_state["momentum"], 1.0)  # the optimizer is left alone
  assert int(state.step) == 7
  # A second round from the reset weights; decay 1 then only copies the slow weights back.
  state = state.replace(params={"w": jnp.asarray(c)})
  state, slow = lookahead.update(state, slow, 0.25)
  want = 0.25 * want + 0.75 * c
  np.testing.assert_allclose(state.params["w"], want, rtol=1e-6)
  state = state.replace(params={"w": jnp.asarray(a)})
  state, slow = lookahead.update(state, slow, 1.0)
  np.testing.assert_allclose(state.params["w"], want, rtol=1e-6)


def test_update_is_elementwise_over_a_model_axis():
  """Two stacked models average like each alone."""
  w = np.arange(8, dtype=np.float32).reshape(2, 4)
  state = _state({"w": jnp.asarray(w)}, {})
  slow = lookahead.init(state)
  state = state.replace(params={"w": jnp.asarray(w[::-1] * 3)})
  state, _ = lookahead.update(state, slow, 0.5)
  for m in range(2):
    np.testing.assert_allclose(state.params["w"][m], 0.5 * w[m] + 0.5 * 3 * w[::-1][m])


def test_decay_and_due_are_airbench94s():
  la = lookahead.Lookahead(100)
  assert float(la.decay(0)) == 0.0
  assert float(la.decay(50)) == pytest.approx(0.95 ** 5 * 0.125)
  assert float(la.decay(100)) == pytest.approx(0.95 ** 5)
  assert float(la.decay(150)) == pytest.approx(0.95 ** 5)  # past the end: held
  other = lookahead.Lookahead(10, base=0.9, every=2, power=1.0)
  assert float(other.decay(5)) == pytest.approx(0.405)
  due = [t for t in range(1, 13) if bool(lookahead.Lookahead(12, every=5).due(t))]
  assert due == [5, 10, 12]  # every 5 updates, and the last
  for bad in ({"total_steps": 0}, {"total_steps": 5, "every": 0},
              {"total_steps": 5, "base": 1.5}):
    with pytest.raises(ValueError):
      lookahead.Lookahead(**bad)


def _scale(x):
  return x.astype(jnp.float32) / 16.0


@pytest.fixture(scope="module")
def source():
  return sources.InMemory(sources.subsets("digits", {"train": 256, "val": 64}, seed=0),
                          eval_batch_size=64)


def _population(num_models, la=None):
  tx = make_optimizer({"name": "sgd", "momentum": 0.9}, 0.1)
  return Population(create_model("simple_cnn_small", num_classes=10), tx, num_models=num_models,
                    preprocess=_scale, lookahead=la)


def test_train_step_lookahead_equals_plain_steps_averaged_by_hand(source):
  """7 updates with a lookahead every 3 (after updates 3, 6 and the last, 7): the same weights as
  plain steps followed by :func:`lookahead.update` with the decay of those updates."""
  la = lookahead.Lookahead(7, every=3)
  with_la, plain = _population(1, la), _population(1)
  state, keys = with_la.init([3], source.input_shape)
  assert state.slow is not None
  for state, _ in with_la.steps(state, keys, source, batch_size=32, start=0, stop=7):
    pass
  ref, keys = plain.init([3], source.input_shape)
  assert ref.slow is None
  slow = lookahead.init(ref)
  for start, stop in ((0, 3), (3, 6), (6, 7)):  # the updates, each run followed by an average
    for ref, _ in plain.steps(ref, keys, source, batch_size=32, start=start, stop=stop):
      pass
    ref, slow = lookahead.update(ref, slow, 0.95 ** 3 * (stop / 7) ** 3)
  flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])  # noqa: E731
  np.testing.assert_allclose(flat(state.params), flat(ref.params), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(flat(state.batch_stats), flat(ref.batch_stats), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(flat(state.slow["params"]), flat(state.params))  # ended on a step
  # The averaging changed the result: without it the weights differ.
  unaveraged, keys = plain.init([3], source.input_shape)
  for unaveraged, _ in plain.steps(unaveraged, keys, source, batch_size=32, start=0, stop=7):
    pass
  assert not np.allclose(flat(unaveraged.params), flat(ref.params), rtol=1e-3)


def test_population_lookahead_equals_each_model_alone(source):
  la = lookahead.Lookahead(4, every=2)
  two, one = _population(2, la), _population(1, la)
  state, keys = two.init([0, 1], source.input_shape)
  for state, _ in two.steps(state, keys, source, batch_size=32, start=0, stop=4):
    pass
  for m, seed in enumerate((0, 1)):
    alone, k = one.init([seed], source.input_shape)
    for alone, _ in one.steps(alone, k, source, batch_size=32, start=0, stop=4):
      pass
    for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(state.params)):
      np.testing.assert_allclose(a[0], b[m], rtol=1e-4, atol=1e-6)


def test_a_state_without_slow_weights_is_a_clear_error():
  state = _state({"w": jnp.ones(2)}, {})
  with pytest.raises(ValueError, match="no slow weights"):
    lookahead.step(lookahead.Lookahead(4), state)
