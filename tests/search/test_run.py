import json

import jax
import numpy as np
import pytest

from jaxcnn import search
from jaxcnn.search import benchmarks

SPACE = search.Space({f"c{i}": tuple(range(4)) for i in range(4)})
EV = benchmarks.onemax(SPACE, target=[1, 2, 3, 0])


def evolution():
  return search.strategies.get("evolution", population_size=8, sample_size=3)


class Interrupt(Exception):
  pass


@pytest.mark.parametrize("batch_size", [1, 3])
def test_resume_equals_uninterrupted(tmp_path, batch_size):
  key = jax.random.PRNGKey(0)
  full = search.run(SPACE, evolution(), EV, 60, key, workdir=tmp_path / "a",
                    batch_size=batch_size, progress=False)
  calls = []

  def flaky(archs):
    calls.append(len(archs))
    if sum(calls) > 51:
      raise Interrupt
    return EV(archs)

  with pytest.raises(Interrupt):
    search.run(SPACE, evolution(), flaky, 60, key, workdir=tmp_path / "b",
               batch_size=batch_size, progress=False)
  resumed = search.run(SPACE, evolution(), EV, 60, key, workdir=tmp_path / "b",
                       batch_size=batch_size, progress=False)
  assert resumed.history == full.history
  jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.state, full.state)
  for name in ("history.jsonl",):
    assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
  # A larger budget continues the same search.
  longer = search.run(SPACE, evolution(), EV, 80, key, workdir=tmp_path / "b",
                      batch_size=batch_size, progress=False)
  straight = search.run(SPACE, evolution(), EV, 80, key, batch_size=batch_size, progress=False)
  assert longer.history == straight.history


def test_result_and_history(tmp_path):
  res = search.run(SPACE, search.strategies.get("reinforce"), EV, 20, jax.random.PRNGKey(1),
                   workdir=tmp_path, batch_size=4, top_k=3, progress=False)
  lines = [json.loads(l) for l in (tmp_path / "history.jsonl").read_text().splitlines()]
  assert len(lines) == 20 and [l["index"] for l in lines] == list(range(20))
  assert set(lines[0]["arch"]) == set(SPACE.names)
  assert res.archs.shape == (20, 4) and res.rewards.shape == (20,)
  np.testing.assert_allclose(res.rewards, np.asarray(EV(res.archs)))
  assert res.best_rewards[0] == res.rewards.max() and len(res.best) == 3
  assert list(res.best_rewards) == sorted(res.best_rewards, reverse=True)
  assert SPACE.decode(res.best_archs[0]) == res.best[0]["arch"]


def test_mismatched_or_damaged_state_is_an_error(tmp_path):
  search.run(SPACE, evolution(), EV, 10, jax.random.PRNGKey(0), workdir=tmp_path, progress=False)
  other = search.strategies.get("evolution", population_size=9, sample_size=3)
  with pytest.raises(ValueError, match="search_state.npz"):
    search.run(SPACE, other, EV, 20, jax.random.PRNGKey(0), workdir=tmp_path, progress=False)
  (tmp_path / "search_state.npz").write_bytes(b"garbage")
  with pytest.raises(ValueError, match="search_state.npz"):
    search.run(SPACE, evolution(), EV, 20, jax.random.PRNGKey(0), workdir=tmp_path,
               progress=False)


def test_simulate_matches_run():
  strategy = evolution()
  keys = jax.random.split(jax.random.PRNGKey(3), 2)
  _, archs, rewards = benchmarks.simulate(strategy, SPACE, EV, 30, keys, batch_size=3)
  res = search.run(SPACE, strategy, EV, 30, keys[1], batch_size=3, progress=False)
  np.testing.assert_array_equal(archs[1], res.archs)
  np.testing.assert_allclose(rewards[1], res.rewards)


def test_benchmarks():
  table, opt = benchmarks.planted(SPACE, seed=0)
  assert table.shape == (4, 4, 4, 4)
  ev = benchmarks.lookup(table)
  grid = np.stack(np.meshgrid(*[np.arange(4)] * 4, indexing="ij"), -1).reshape(-1, 4)
  r = np.asarray(ev(grid))
  assert np.array_equal(grid[r.argmax()], np.asarray(opt)) and len(np.unique(r)) == len(r)
  np.testing.assert_allclose(np.floor(r), (grid == np.asarray(opt)).sum(1))
  np.testing.assert_allclose(benchmarks.onemax(SPACE)(np.zeros((1, 4), np.int32)), [1.0])


def test_history_with_unusual_options(tmp_path):
  space = search.Space({"kernel": ((1, 1), (3, 3)), "act": (None, "relu")})
  ev = lambda a: np.asarray(a).sum(1).astype(np.float32)
  res = search.run(space, search.strategies.get("random"), ev, 6, jax.random.PRNGKey(0),
                   workdir=tmp_path, batch_size=4, progress=False)
  again = search.run(space, search.strategies.get("random"), ev, 6, jax.random.PRNGKey(0),
                     workdir=tmp_path, batch_size=4, progress=False)
  assert again.history == res.history and len(res.history) == 6


def test_an_evaluators_metrics_are_recorded_beside_each_reward(tmp_path):
  space = search.Space({"a": (0, 1, 2), "b": (0, 1)})

  class WithMetrics:
    last_metrics = None

    def __call__(self, archs):
      archs = np.asarray(archs)
      self.last_metrics = {"accuracy": archs[:, 0] / 2.0, "params": archs.sum(1) * 10.0}
      return archs[:, 0].astype(np.float32)

  result = search.run(space, search.strategies.get("random"), WithMetrics(), budget=6,
                      key=jax.random.PRNGKey(0), workdir=tmp_path, batch_size=3, progress=False)
  lines = [json.loads(l) for l in (tmp_path / "history.jsonl").read_text().splitlines()]
  for record in (*result.history, *lines):
    a, b = record["indices"]
    assert record["accuracy"] == a / 2.0 and record["params"] == (a + b) * 10.0
