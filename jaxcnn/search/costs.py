"""Costs and constraints: parameters and multiply-adds of candidates, constrained rewards, Pareto
fronts.

Costs come from :mod:`jaxcnn.models.analysis` (``count_params``: the ``"params"`` collection;
``flops``: multiply-accumulates per image, the papers' convention), computed from shapes only and
cached per model. :func:`mnas_reward` is MnasNet's objective; :class:`Constrained` wraps an
evaluator with costs and a constrained reward; :func:`pareto_front` finds the non-dominated
candidates of several objectives.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from jaxcnn.models.analysis import count_params, flops
from jaxcnn.search.evaluators import Evaluator, Metrics, _archs


class Costs:
  """``costs(archs) -> {"params": [n], "macs": [n]}`` of the models ``build(arch)`` builds.

  Args:
    build: ``build(arch int32 [L]) -> flax Module``.
    input_shape: one image, ``(height, width, channels)``; MACs are per image at this size.
  """

  def __init__(self, build: Callable[[np.ndarray], Any], input_shape: Sequence[int]):
    if len(tuple(input_shape)) != 3:
      raise ValueError(f"input_shape is one image (height, width, channels), got {input_shape}.")
    self.build = build
    self.input_shape = (1,) + tuple(int(d) for d in input_shape)
    self._cache: dict[Any, tuple[int, float]] = {}

  def one(self, arch: Any) -> tuple[int, float]:
    """``(params, macs)`` of one architecture."""
    model = self.build(np.asarray(arch, np.int32))
    if model not in self._cache:
      self._cache[model] = (count_params(model, self.input_shape),
                            flops(model, self.input_shape))
    return self._cache[model]

  def __call__(self, archs: Any) -> dict[str, np.ndarray]:
    pairs = [self.one(a) for a in _archs(archs)]
    return {"params": np.asarray([p for p, _ in pairs], np.int64),
            "macs": np.asarray([m for _, m in pairs], np.float64)}


def mnas_reward(accuracy: Any, cost: Any, target: float, alpha: float = -0.07,
                beta: float = -0.07) -> np.ndarray:
  """MnasNet's reward ``accuracy * (cost / target) ** w``, ``w = alpha`` if ``cost <= target``
  else ``beta``.

  ``alpha = beta = -0.07`` is the paper's soft constraint (a model twice as costly must be about
  5% more accurate to score the same); ``alpha = 0, beta = -1`` its hard one.

  References:
    Tan et al. 2019, "MnasNet: Platform-Aware Neural Architecture Search for Mobile", Eq. 2.
  """
  if target <= 0:
    raise ValueError(f"target must be > 0, got {target}.")
  accuracy = np.asarray(accuracy, np.float64)
  cost = np.asarray(cost, np.float64)
  if (cost <= 0).any():
    raise ValueError("costs must be > 0 for the MnasNet reward.")
  w = np.where(cost <= target, alpha, beta)
  return (accuracy * (cost / target) ** w).astype(np.float32)


def hard_limit(reward: Any, cost: Any, limit: float, penalty: float = -np.inf) -> np.ndarray:
  """``reward`` where ``cost <= limit``, else ``penalty``: a candidate over budget loses."""
  reward = np.asarray(reward, np.float32)
  return np.where(np.asarray(cost) <= limit, reward, np.float32(penalty)).astype(np.float32)


class Constrained(Evaluator):
  """An evaluator's reward (its accuracy) traded against a cost by :func:`mnas_reward`.

  Metrics: the wrapped evaluator's, ``params`` and ``macs``, and ``reward``.

  Args:
    evaluator: any :class:`~jaxcnn.search.evaluators.Evaluator` (or ``archs -> rewards``).
    costs: a :class:`Costs`.
    target: the target cost.
    cost: ``"macs"`` or ``"params"``.
    alpha, beta: the exponents of :func:`mnas_reward`.
  """

  def __init__(self, evaluator: Any, costs: Costs, *, target: float, cost: str = "macs",
               alpha: float = -0.07, beta: float = -0.07):
    if cost not in ("macs", "params"):
      raise ValueError(f"cost must be 'macs' or 'params', got {cost!r}.")
    self.evaluator, self.costs = evaluator, costs
    self.target, self.cost, self.alpha, self.beta = float(target), cost, alpha, beta

  def evaluate(self, archs: Any) -> tuple[np.ndarray, Metrics]:
    archs = _archs(archs)
    if isinstance(self.evaluator, Evaluator):
      accuracy, metrics = self.evaluator.evaluate(archs)
    else:
      accuracy = np.asarray(self.evaluator(archs), np.float32)
      metrics = {"accuracy": accuracy}
    metrics = dict(metrics, **self.costs(archs))
    metrics.setdefault("accuracy", np.asarray(accuracy, np.float32))
    reward = mnas_reward(accuracy, metrics[self.cost], self.target, self.alpha, self.beta)
    metrics["reward"] = reward
    return reward.copy(), metrics


def pareto_front(objectives: Any, maximize: Sequence[bool] | bool = True,
                 chunk: int = 1024) -> np.ndarray:
  """Indices (ascending) of the non-dominated points of ``objectives`` [n, k].

  Point ``a`` dominates ``b`` when it is at least as good in every objective and better in one;
  ``maximize`` says, per objective, whether higher is better (e.g. ``(True, False)`` for
  accuracy and MACs). Duplicated points do not dominate each other, so all copies of a front
  point are kept.
  """
  obj = np.asarray(objectives, np.float64)
  if obj.ndim != 2:
    raise ValueError(f"objectives must be [n, k], got shape {obj.shape}.")
  sign = np.broadcast_to(np.where(np.asarray(maximize, bool), 1.0, -1.0), (obj.shape[1],))
  obj = obj * sign  # now all maximized
  if np.isnan(obj).any():
    raise ValueError("objectives contain NaN.")
  dominated = np.zeros(len(obj), bool)
  for start in range(0, len(obj), chunk):
    b = obj[start:start + chunk, None, :]  # candidates to test  [c, 1, k]
    ge = (obj[None] >= b).all(-1)          # [c, n]: point j at least as good as candidate
    gt = (obj[None] > b).any(-1)
    dominated[start:start + chunk] = (ge & gt).any(-1)
  return np.flatnonzero(~dominated)
