"""Costs, the MnasNet reward by hand, the Pareto front against brute force, the front plot."""

import itertools

import numpy as np
import pytest

from jaxcnn import search
from jaxcnn.search import costs, evaluators, nasbench201 as nb, plots

from test_nasbench201 import formula  # noqa: E402  (the hand count)


def test_mnas_reward_by_hand():
  acc = np.asarray([0.7, 0.75, 0.8])
  macs = np.asarray([150e6, 300e6, 600e6])
  got = costs.mnas_reward(acc, macs, target=300e6)
  want = [0.7 * 0.5 ** -0.07, 0.75 * 1.0, 0.8 * 2.0 ** -0.07]  # Tan et al. 2019, Eq. 2
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert want[0] == pytest.approx(0.7348, abs=1e-4)  # 2 ** 0.07 = 1.0497
  hard = costs.mnas_reward(acc, macs, target=300e6, alpha=0.0, beta=-1.0)
  np.testing.assert_allclose(hard, [0.7, 0.75, 0.4], rtol=1e-6)
  np.testing.assert_array_equal(costs.hard_limit(acc, macs, 300e6),
                                np.float32([0.7, 0.75, -np.inf]))
  with pytest.raises(ValueError, match="target must be > 0"):
    costs.mnas_reward(acc, macs, target=0)


def test_costs_and_constrained_reward_of_the_cell_space():
  build = lambda a: nb.build(a, num_cells=1, channels=8)
  c = costs.Costs(build, (16, 16, 3))
  archs = np.asarray([[3, 3, 4, 1, 3, 1], [0, 0, 0, 0, 0, 0], [3, 3, 4, 1, 3, 1]])
  got = c(archs)
  for arch, p, m in zip(archs, got["params"], got["macs"]):
    assert (p, m) == formula(nb.arch_ops(arch), 1, 8, 10, size=16)
  assert len(c._cache) == 2  # analysed once per distinct model
  acc = {tuple(a): v for a, v in zip(map(tuple, archs[:2]), (0.9, 0.5))}
  target = float(got["macs"][1])
  ev = costs.Constrained(evaluators.Lookup(acc), c, target=target)
  rewards, metrics = ev.evaluate(archs)
  np.testing.assert_allclose(rewards, np.asarray([0.9, 0.5, 0.9]) *
                             (got["macs"] / target) ** -0.07, rtol=1e-6)
  assert {"params", "macs", "reward", "accuracy"} <= set(metrics)
  with pytest.raises(ValueError, match="cost must be"):
    costs.Constrained(evaluators.Lookup(acc), c, target=1.0, cost="latency")


def brute_force_front(points, maximize):
  sign = np.where(maximize, 1.0, -1.0)
  p = np.asarray(points) * sign
  keep = []
  for i in range(len(p)):
    if not any(all(p[j] >= p[i]) and any(p[j] > p[i]) for j in range(len(p)) if j != i):
      keep.append(i)
  return np.asarray(keep)


@pytest.mark.parametrize("seed, k", [(0, 2), (1, 2), (2, 3)])
def test_pareto_front_against_brute_force(seed, k):
  rng = np.random.default_rng(seed)
  points = rng.integers(0, 12, (300, k)).astype(float)  # many ties and duplicates
  maximize = [True, False, True][:k]
  got = costs.pareto_front(points, maximize, chunk=64)
  np.testing.assert_array_equal(got, brute_force_front(points, maximize))
  assert len(got) >= 1


def test_pareto_front_small_cases():
  pts = [[0.9, 100], [0.8, 50], [0.85, 120], [0.9, 100], [0.7, 50]]
  assert costs.pareto_front(pts, (True, False)).tolist() == [0, 1, 3]
  with pytest.raises(ValueError, match=r"\[n, k\]"):
    costs.pareto_front([1, 2, 3])


def test_plot_pareto(tmp_path):
  rng = np.random.default_rng(0)
  cost = rng.uniform(1e6, 1e8, 50)
  reward = rng.uniform(0.5, 0.9, 50)
  path = tmp_path / "pareto.png"
  front = plots.plot_pareto(cost, reward, str(path), labels=[str(i) for i in range(50)])
  assert path.stat().st_size > 5000
  want = brute_force_front(np.stack([reward, cost], 1), np.asarray([True, False]))
  assert sorted(front.tolist()) == want.tolist()
  assert (np.diff(cost[front]) >= 0).all() and (np.diff(reward[front]) >= 0).all()
