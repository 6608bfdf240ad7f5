"""Lookahead averaging against its formula, step by step in NumPy."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.train import lookahead
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


def test_decay_schedule_is_airbench94s():
  decay = lookahead.decay_schedule(100)
  assert decay(0) == 0.0
  assert decay(50) == pytest.approx(0.95 ** 5 * 0.125)
  assert decay(100) == pytest.approx(0.95 ** 5)
  assert decay(150) == pytest.approx(0.95 ** 5)  # past the end: held
  assert lookahead.decay_schedule(10, base=0.9, every=2, power=1.0)(5) == pytest.approx(0.405)
  with pytest.raises(ValueError, match="total_steps"):
    lookahead.decay_schedule(0)
