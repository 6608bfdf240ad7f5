import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import search
from jaxcnn.search.run import _compiled, load_state, save_state

SPACE = search.Space({"a": (0, 1, 2, 3, 4), "b": ("x", "y"), "c": (1, 2, 3), "d": ("only",)})
CONFIGS = {
    "random": {},
    "evolution": {"population_size": 6, "sample_size": 3},
    "reinforce": {},
    "reinforce_lstm": {"policy": "lstm", "hidden": 8, "entropy_weight": 0.01},
}


def make(name):
  return search.strategies.get(name.replace("_lstm", ""), **CONFIGS[name])


def test_registry():
  assert set(search.strategies.names()) >= {"random", "evolution", "reinforce"}
  with pytest.raises(ValueError, match="Unknown search strategy 'annealing'.*evolution"):
    search.strategies.get("annealing")
  with pytest.raises(ValueError, match="random"):
    search.strategies.get("annealing(t=1)")
  assert search.strategies.get("evolution(population_size=7)").population_size == 7
  with pytest.raises(ValueError):
    search.strategies.get("evolution", population_size=3, sample_size=5)
  with pytest.raises(ValueError, match="lstm"):
    search.strategies.get("reinforce", policy="transformer")


def drive(strategy, key, rounds=4, num=5):
  state = strategy.init(jax.random.fold_in(key, 99), SPACE)
  ask, tell = _compiled(strategy)
  out = []
  for i in range(rounds):
    archs, state = ask(jax.random.fold_in(key, i), state, num)
    rewards = (archs[:, 0] == 4).astype(jnp.float32) + 0.1 * archs[:, 2]
    state = tell(state, archs, rewards)
    out.append(archs)
  return jnp.concatenate(out), state


@pytest.mark.parametrize("name", list(CONFIGS))
def test_valid_deterministic_and_saves(name, tmp_path):
  strategy = make(name)
  archs, state = drive(strategy, jax.random.PRNGKey(0))
  archs = np.asarray(archs)
  assert archs.dtype == np.int32 and archs.shape == (20, 4)
  assert (archs >= 0).all() and (archs < np.asarray(SPACE.num_options)).all()
  archs2, state2 = drive(strategy, jax.random.PRNGKey(0))
  np.testing.assert_array_equal(archs, archs2)
  jax.tree_util.tree_map(np.testing.assert_array_equal, state, state2)
  archs3, _ = drive(strategy, jax.random.PRNGKey(1))
  assert not np.array_equal(archs, archs3)
  # The saved format round-trips.
  path = tmp_path / "s.npz"
  save_state(path, state, step=4, num_evaluated=20)
  template = strategy.init(jax.random.PRNGKey(5), SPACE)
  restored, step, n = load_state(path, template)
  assert (step, n) == (4, 20)
  jax.tree_util.tree_map(np.testing.assert_array_equal, state, restored)
  assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(state)


def test_load_errors_name_the_file(tmp_path):
  ev = make("evolution")
  path = tmp_path / "s.npz"
  save_state(path, ev.init(jax.random.PRNGKey(0), SPACE), step=0, num_evaluated=0)
  with pytest.raises(ValueError, match="s.npz"):
    load_state(path, make("reinforce").init(jax.random.PRNGKey(0), SPACE))
  other = search.strategies.get("evolution", population_size=7, sample_size=3)
  with pytest.raises(ValueError, match="s.npz"):
    load_state(path, other.init(jax.random.PRNGKey(0), SPACE))
  path.write_bytes(b"not a zip file")
  with pytest.raises(ValueError, match="s.npz"):
    load_state(path, ev.init(jax.random.PRNGKey(0), SPACE))


def test_evolution_random_until_full_then_mutates_one_choice():
  ev = make("evolution")
  state = ev.init(jax.random.PRNGKey(0), SPACE)
  archs, _ = ev.ask(jax.random.PRNGKey(1), state, 6)
  state = ev.tell(state, archs, jnp.arange(6, dtype=jnp.float32))
  assert int(state.count) == 6
  np.testing.assert_array_equal(state.birth, np.arange(6))
  children, _ = jax.jit(ev.ask, static_argnums=2)(jax.random.PRNGKey(2), state, 200)
  children = np.asarray(children)
  pop = np.asarray(state.archs)
  # Each child differs from some member in exactly one choice (never the 1-option choice "d").
  diffs = (children[:, None, :] != pop[None, :, :]).sum(-1)
  assert (diffs == 1).any(1).all()
  assert (children[:, 3] == 0).all()
  # The best member (reward 5) wins every tournament it enters: P(enter) = 3/6.
  from_best = (diffs[:, 5] == 1).mean()
  assert 0.3 < from_best <= 1.0


def test_evolution_mutate_exactly_one():
  from jaxcnn.search.strategies import mutate
  n = SPACE.num_options
  arch = jnp.array([4, 1, 2, 0], jnp.int32)
  out = jax.vmap(lambda k: mutate(k, arch, n))(jax.random.split(jax.random.PRNGKey(0), 500))
  d = np.asarray(out != arch)
  assert (d.sum(1) == 1).all() and not d[:, 3].any()
  assert d[:, :3].any(0).all()  # every mutable choice gets mutated sometimes
  assert (np.asarray(out) < np.asarray(n)).all()


def test_evolution_removes_the_oldest():
  ev = make("evolution")
  state = ev.init(jax.random.PRNGKey(0), SPACE)
  archs = jnp.asarray([[i % 5, i % 2, i % 3, 0] for i in range(8)], jnp.int32)
  rewards = jnp.asarray([100.0, 100.0] + [0.0] * 6)  # the oldest are the best: still removed
  state = ev.tell(state, archs[:6], rewards[:6])
  state = ev.tell(state, archs[6:], rewards[6:])
  assert int(state.count) == 8
  assert sorted(np.asarray(state.birth).tolist()) == [2, 3, 4, 5, 6, 7]
  assert float(state.rewards.max()) == 0.0
  members = {tuple(a) for a in np.asarray(state.archs).tolist()}
  assert members == {tuple(a) for a in np.asarray(archs[2:]).tolist()}


def test_reinforce_factorized_gradient_matches_softmax():
  rf = make("reinforce")
  state = rf.init(jax.random.PRNGKey(0), SPACE)
  logits = jax.random.normal(jax.random.PRNGKey(3), state.params["logits"].shape)
  params = {"logits": logits}
  arch = jnp.array([[3, 1, 0, 0]], jnp.int32)
  grad = jax.grad(lambda p: rf.log_prob(p, state.num_options, arch).sum())(params)["logits"]
  expected = np.zeros((4, 5))
  for j, (a, n) in enumerate(zip([3, 1, 0, 0], [5, 2, 3, 1])):
    z = np.asarray(logits[j, :n], np.float64)
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    expected[j, :n] = np.eye(n)[a] - p
  np.testing.assert_allclose(grad, expected, atol=1e-6)
  # log p by hand.
  lp = sum(np.log(np.exp(logits[j, a]) / np.exp(logits[j, :n]).sum())
           for j, (a, n) in enumerate(zip([3, 1, 0, 0], [5, 2, 3, 1])))
  np.testing.assert_allclose(rf.log_prob(params, state.num_options, arch)[0], lp, rtol=1e-5)


def test_reinforce_update_direction_and_baseline():
  rf = search.strategies.get("reinforce", learning_rate=0.1, baseline_decay=0.5)
  state = rf.init(jax.random.PRNGKey(0), SPACE)
  archs = jnp.array([[0, 0, 0, 0], [1, 1, 1, 0]], jnp.int32)
  state = rf.tell(state, archs, jnp.array([1.0, 0.0]))
  assert float(state.baseline) == pytest.approx(0.5)  # first batch mean, then the EMA
  lp = rf.log_prob(state.params, state.num_options, archs)
  assert lp[0] > lp[1]  # the rewarded arch became more likely
  state = rf.tell(state, archs, jnp.array([3.0, 3.0]))
  assert float(state.baseline) == pytest.approx(0.5 * 0.5 + 0.5 * 3.0)


def test_reinforce_lstm_log_prob_is_normalized():
  rf = make("reinforce_lstm")
  state = rf.init(jax.random.PRNGKey(0), SPACE)
  grid = np.stack(np.meshgrid(*[np.arange(int(n)) for n in SPACE.num_options],
                              indexing="ij"), -1).reshape(-1, 4)
  lp = rf.log_prob(state.params, state.num_options, jnp.asarray(grid, jnp.int32))
  np.testing.assert_allclose(np.exp(lp).sum(), 1.0, rtol=1e-5)
