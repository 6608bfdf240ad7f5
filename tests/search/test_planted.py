"""Strategies against random search on a planted-optimum problem, over many seeds."""

import jax
import numpy as np
import pytest
from scipy import stats

from jaxcnn import search
from jaxcnn.search import benchmarks

SPACE = search.Space({f"c{i}": tuple(range(4)) for i in range(6)})  # 4096 architectures
TABLE, OPTIMUM = benchmarks.planted(SPACE, seed=0)
EVALUATE = benchmarks.lookup(TABLE)
TOP = np.sort(np.asarray(TABLE).ravel())[::-1]
TOP1 = TOP[40]  # the 41 best (1%)
BUDGET, SEEDS = 60, 100


def success(name, batch_size=1, **kwargs):
  strategy = search.strategies.get(name, **kwargs)
  keys = jax.random.split(jax.random.PRNGKey(7), SEEDS)
  _, _, rewards = benchmarks.simulate(strategy, SPACE, EVALUATE, BUDGET, keys, batch_size)
  best = np.asarray(rewards).max(1)
  return (best >= TOP[0]).mean(), (best >= TOP1).mean()


# Slow-marked: in one full-suite run (pytest -n 2) this test's compiled, vmapped searches
# (benchmarks.simulate) stopped making progress with the CPU idle, a hang not yet understood (an
# exploratory 200-seed run of the same function hung too). Run it with `pytest -m slow`.
@pytest.mark.slow
def test_random_matches_its_analytic_rate_and_others_beat_it():
  _, random_top = success("random")
  p = 1 - (1 - 41 / SPACE.size) ** BUDGET  # about 0.45
  lo, hi = stats.binom.interval(0.999, SEEDS, p)
  assert lo <= random_top * SEEDS <= hi, (random_top, p)
  random_opt = 1 - (1 - 1 / SPACE.size) ** BUDGET  # about 0.015
  evo_opt, evo_top = success("evolution", population_size=20, sample_size=5)
  rf_opt, rf_top = success("reinforce", batch_size=5, learning_rate=0.2)
  lstm_opt, lstm_top = success("reinforce", batch_size=5, policy="lstm", hidden=16,
                               learning_rate=0.02)
  print(f"random {random_top:.2f} (analytic {p:.2f}); top-1%/optimum: evolution {evo_top:.2f}/"
        f"{evo_opt:.2f}, reinforce {rf_top:.2f}/{rf_opt:.2f}, lstm {lstm_top:.2f}/{lstm_opt:.2f}")
  for opt, top in [(evo_opt, evo_top), (rf_opt, rf_top), (lstm_opt, lstm_top)]:
    assert top > random_top + 0.2 and opt > random_opt + 0.1, (opt, top, random_top)


def test_planted_matches_has_planted_optimum_and_counts_matches():
  """The function form for spaces too large for a table: the table's optimum (same seed), and
  reward = matches + a tiebreak in [0, 0.01); checked on every architecture of SPACE."""
  reward, optimum = benchmarks.planted_matches(SPACE, seed=0)
  np.testing.assert_array_equal(optimum, OPTIMUM)
  archs = np.stack(np.unravel_index(np.arange(SPACE.size), SPACE.num_options), axis=1)
  rewards = np.asarray([reward(a) for a in archs])
  matches = (archs == optimum).sum(1)
  assert np.all((matches <= rewards) & (rewards < matches + 0.01))
  assert np.argmax(rewards) == np.ravel_multi_index(tuple(optimum), SPACE.num_options)
