"""EfficientNet compound scaling: the (alpha, beta, gamma) grid search and scaling by phi.

Tan & Le 2019 (section 3.3) scale depth, width and input resolution together,
``d = alpha**phi``, ``w = beta**phi``, ``r = gamma**phi``, with ``alpha * beta**2 * gamma**2 ~ 2``
and ``alpha, beta, gamma >= 1``, so that multiply-adds grow by about ``2**phi``. Their step 1
fixes ``phi = 1`` and grid-searches the three coefficients on the base network (B0: alpha = 1.2,
beta = 1.1, gamma = 1.15); step 2 fixes the coefficients and scales by ``phi = 1 .. N``.

Here:

* :func:`feasible_grid`: every triple on a grid over ``[1, 2]**3`` whose
  ``alpha * beta**2 * gamma**2`` lies within ``tol`` of 2 (the paper's triple is on the default
  grid: its product is 1.92);
* :func:`scaled`: a base network's constructor ``base_model_fn(width=, depth=)`` (the zoo's
  :class:`~jaxcnn.models.efficientnet.EfficientNet`, whose channels are rounded to multiples of
  8 and repeats up, as the reference implementation) and a resolution scaled by ``phi``;
* :func:`search`: each feasible triple scored at ``phi = 1`` on a proxy task (seeds of one
  model train together as one :class:`~jaxcnn.train.population.Population`; triples that round
  to the same network and resolution are trained once), ranked by accuracy;
* :func:`scale_up`: ``phi = 0 .. N`` with the chosen triple, and the single-dimension baselines
  at the same multiply-adds as the compound model (nominally width-only ``w`` with ``w**2``
  equal to the compound model's multiply-add ratio, depth-only ``d`` equal to it,
  resolution-only ``r`` with ``r**2`` equal to it; :func:`matched` then bisects the multiplier
  until the measured multiply-adds match): the comparison of the paper's Figure 3 / Table 3.

Multiply-adds are :func:`jaxcnn.models.analysis.flops` (the published figures' convention).

References: Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks" (section 3.3, Figure 3, Table 3).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.data import resize as resize_lib
from jaxcnn.data import sources
from jaxcnn.models import analysis
from jaxcnn.models.efficientnet import EfficientNet, compound_scale
from jaxcnn.train.population import Population

PAPER = (1.2, 1.1, 1.15)  # Tan & Le 2019, section 4.2: the B0 grid search's alpha, beta, gamma
METHODS = ("compound", "width", "depth", "resolution")

# A tiny B0-like proxy: B0's first four stages (expansion, kernel, stride, channels, repeats),
# with B0's stem and head, for 16x16 inputs at width 0.5.
TINY_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 1))


def constraint(alpha: Any, beta: Any, gamma: Any) -> Any:
  """``alpha * beta**2 * gamma**2``: the factor by which one step of phi multiplies FLOPs."""
  return alpha * beta**2 * gamma**2


def feasible_grid(step: float = 0.05, tol: float = 0.1, *, low: float = 1.0, high: float = 2.0,
                  target: float = 2.0) -> np.ndarray:
  """The grid's triples with ``|alpha * beta**2 * gamma**2 - target| <= tol``.

  Args:
    step: the grid spacing of each coefficient over ``[low, high]`` (0.05 holds 1.2, 1.1, 1.15).
    tol: the tolerance on the constraint (the paper's triple has 1.92: ``tol >= 0.08`` keeps it).
    low, high: the range of each coefficient (``low >= 1``: scaling never shrinks).
    target: the FLOPs factor per unit of phi (2 in the paper).

  Returns:
    ``(n, 3)`` float64 ``(alpha, beta, gamma)`` rows, sorted lexicographically.
  """
  if not 0 < step <= high - low:
    raise ValueError(f"step must be in (0, high - low], got step={step}, [{low}, {high}].")
  if low < 1:
    raise ValueError(f"Compound scaling needs coefficients >= 1, got low={low}.")
  if tol < 0:
    raise ValueError(f"tol must be >= 0, got {tol}.")
  count = int(math.floor((high - low) / step + 1e-9)) + 1
  values = np.round(low + step * np.arange(count), 10)
  a, b, g = (x.reshape(-1) for x in np.meshgrid(values, values, values, indexing="ij"))
  keep = np.abs(constraint(a, b, g) - target) <= tol + 1e-12
  return np.stack([a[keep], b[keep], g[keep]], 1)


def scaled(base_model_fn: Callable[..., nn.Module], alpha: float, beta: float, gamma: float,
           phi: float, base_resolution: int) -> tuple[nn.Module, int]:
  """The base network scaled by ``phi``: ``(base_model_fn(width=beta**phi, depth=alpha**phi),
  round(base_resolution * gamma**phi))``.

  Args:
    base_model_fn: ``fn(width=, depth=) -> Module`` (e.g. ``functools.partial(EfficientNet,
      num_classes=10)``; it rounds channels and repeats).
    alpha, beta, gamma: the depth, width and resolution coefficients (>= 1).
    phi: the compound coefficient (0: the base network).
    base_resolution: the base network's input size.
  """
  if base_resolution < 1:
    raise ValueError(f"base_resolution must be >= 1, got {base_resolution}.")
  depth, width, resolution = compound_scale(phi, alpha, beta, gamma)
  return base_model_fn(width=width, depth=depth), int(round(base_resolution * resolution))


def tiny_efficientnet(width: float = 1.0, depth: float = 1.0, *, num_classes: int = 10,
                      base_width: float = 0.5, stages: Sequence[Sequence[int]] = TINY_STAGES
                      ) -> EfficientNet:
  """The proxy base network: the zoo's EfficientNet with ``stages`` at ``base_width * width``,
  no dropout or stochastic depth (short proxy training)."""
  return EfficientNet(width=base_width * width, depth=depth, stages=tuple(map(tuple, stages)),
                      num_classes=num_classes, dropout_rate=0.0, drop_path_rate=0.0,
                      default_resolution=16)


def macs(model: nn.Module, resolution: int, channels: int = 3) -> float:
  """Multiply-adds per image at ``resolution`` (:func:`jaxcnn.models.analysis.flops`, cached per
  model and input shape: a search meets one network many times, as triples round to it and
  :func:`matched`'s bisection revisits a resolution)."""
  return analysis.flops(model, (1, resolution, resolution, channels))


class Proxy:
  """The proxy task: train a model for ``num_steps`` at its resolution, score on ``split``.

  Sources are built once per resolution (:func:`jaxcnn.data.resize.resize_splits` of the uint8
  ``splits``); every seed of one model trains at once (one population); results are cached per
  ``(model, resolution)``, since triples often round to the same network.

  Args:
    splits: ``{"train", "val"}`` uint8 host splits at any size.
    tx: the optax chain.
    num_steps, batch_size: the step budget per model.
    seeds: the seeds each model is trained with (the score is their mean).
    split: the evaluation split.
  """

  def __init__(self, splits: Mapping[str, Mapping[str, Any]], tx: optax.GradientTransformation,
               *, num_steps: int, batch_size: int, seeds: Sequence[int] = (0,),
               split: str = "val"):
    if num_steps < 1 or batch_size < 1 or not len(seeds):
      raise ValueError(f"Need num_steps >= 1, batch_size >= 1 and a seed, got {num_steps}, "
                       f"{batch_size}, {list(seeds)}.")
    if split not in splits:
      raise ValueError(f"No split {split!r} in the proxy's splits {sorted(splits)}.")
    self.splits, self.tx, self.split = splits, tx, split
    self.num_steps, self.batch_size, self.seeds = int(num_steps), int(batch_size), list(seeds)
    self._sources: dict[int, sources.InMemory] = {}
    image = np.asarray(splits["train"]["image"])
    self.channels = int(image.shape[-1]) if image.ndim == 4 else 1
    self.cache: dict[tuple[Any, int], dict[str, float]] = {}

  def source(self, resolution: int) -> sources.InMemory:
    if resolution not in self._sources:
      self._sources[resolution] = sources.InMemory(
          resize_lib.resize_splits(self.splits, resolution))
    return self._sources[resolution]

  def score(self, model: nn.Module, resolution: int) -> dict[str, float]:
    """``{"accuracy", "accuracy_std", "macs", "params", "seconds"}`` of ``model`` at
    ``resolution`` (cached)."""
    key = (model, int(resolution))
    if key in self.cache:
      return dict(self.cache[key], seconds=0.0)
    t0 = time.perf_counter()
    source = self.source(int(resolution))
    pop = Population(model, self.tx, num_models=len(self.seeds),
                     preprocess=lambda x: x.astype(jnp.float32) / 127.5 - 1.0)
    state, keys = pop.init(self.seeds, source.input_shape)
    _, history = pop.train(state, keys, source, num_steps=self.num_steps,
                           batch_size=self.batch_size, eval_splits=[self.split])
    accuracy = np.asarray(history[f"{self.split}_accuracy"][-1], np.float64)
    params = sum(int(np.prod(x.shape[1:])) for x in jax.tree.leaves(state.params))
    result = {"accuracy": float(accuracy.mean()), "accuracy_std": float(accuracy.std()),
              "macs": macs(model, int(resolution), source.input_shape[-1]),
              "params": params, "seconds": time.perf_counter() - t0}
    self.cache[key] = result
    return dict(result)


def search(base_model_fn: Callable[..., nn.Module], proxy: Proxy, triples: Any, *,
           base_resolution: int, phi: float = 1.0) -> list[dict[str, Any]]:
  """Scores every triple's network scaled by ``phi`` on the proxy; rows ranked by accuracy.

  Returns:
    One dict per triple, best first: ``alpha, beta, gamma, constraint, resolution, macs,
    params, accuracy, accuracy_std, seconds, rank`` (ties in accuracy: fewer multiply-adds
    first).
  """
  triples = np.asarray(triples, np.float64).reshape(-1, 3)
  if not len(triples):
    raise ValueError("search needs at least one (alpha, beta, gamma) triple.")
  rows = []
  for alpha, beta, gamma in triples:
    model, resolution = scaled(base_model_fn, alpha, beta, gamma, phi, base_resolution)
    rows.append({"alpha": float(alpha), "beta": float(beta), "gamma": float(gamma),
                 "constraint": float(constraint(alpha, beta, gamma)), "resolution": resolution,
                 **proxy.score(model, resolution)})
  rows.sort(key=lambda r: (-r["accuracy"], r["macs"]))
  for i, r in enumerate(rows):
    r["rank"] = i + 1
  return rows


def single_dimension(method: str, ratio: float) -> tuple[float, float, float]:
  """``(depth, width, resolution)`` multipliers of ``method`` whose nominal multiply-adds are
  ``ratio`` times the base's: depth ``d = ratio``, width ``w = ratio**0.5``, resolution
  ``r = ratio**0.5``."""
  if ratio < 1:
    raise ValueError(f"A scaling ratio must be >= 1, got {ratio}.")
  if method == "depth":
    return ratio, 1.0, 1.0
  if method == "width":
    return 1.0, ratio**0.5, 1.0
  if method == "resolution":
    return 1.0, 1.0, ratio**0.5
  raise ValueError(f"Unknown single-dimension method {method!r}; use depth, width or resolution.")


def _build(base_model_fn, method: str, value: float, base_resolution: int):
  d, w, r = {"depth": (value, 1.0, 1.0), "width": (1.0, value, 1.0),
             "resolution": (1.0, 1.0, value)}[method]
  return (d, w, r), base_model_fn(width=w, depth=d), int(round(base_resolution * r))


def matched(base_model_fn: Callable[..., nn.Module], method: str, target_macs: float, *,
            base_resolution: int, channels: int = 3, iters: int = 12
            ) -> tuple[tuple[float, float, float], nn.Module, int]:
  """The single-dimension network whose *measured* multiply-adds are closest to
  ``target_macs``: bisection on the multiplier (MACs never decrease with it), started from the
  nominal :func:`single_dimension` value, since stem, head and rounding make the nominal one
  miss (e.g. depth-only: the stem and head do not deepen).

  Returns:
    ``((depth, width, resolution) multipliers, model, input resolution)``.
  """
  base = macs(base_model_fn(width=1.0, depth=1.0), base_resolution, channels)
  seen: dict[float, float] = {}

  def cost(v: float) -> float:
    if v not in seen:
      seen[v] = macs(*_build(base_model_fn, method, v, base_resolution)[1:], channels)
    return seen[v]

  nominal = single_dimension(method, max(1.0, target_macs / base))
  lo, hi = 1.0, max(1.0, {"depth": nominal[0], "width": nominal[1],
                          "resolution": nominal[2]}[method])
  for _ in range(8):  # grow the bracket until it holds the target
    if cost(hi) >= target_macs:
      break
    lo, hi = hi, hi * 1.5
  for _ in range(int(iters)):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if cost(mid) < target_macs else (lo, mid)
  value = min((lo, hi), key=lambda v: abs(cost(v) - target_macs))
  return _build(base_model_fn, method, value, base_resolution)


def scale_up(base_model_fn: Callable[..., nn.Module], proxy: Proxy, alpha: float, beta: float,
             gamma: float, *, max_phi: int, base_resolution: int,
             methods: Sequence[str] = METHODS) -> list[dict[str, Any]]:
  """Compound scaling by ``phi = 0 .. max_phi`` and the single-dimension baselines.

  At each ``phi >= 1`` every baseline scales one dimension until its measured multiply-adds
  match the compound model's (:func:`matched`; nominally width-only ``w**2``, depth-only ``d``,
  resolution-only ``r**2`` equal to the compound model's multiply-add ratio over the base).

  Returns:
    One dict per (method, phi): ``method, phi, depth_mult, width_mult, resolution, macs,
    macs_ratio, nominal_ratio ((alpha beta^2 gamma^2)**phi), accuracy, accuracy_std, params``.
  """
  unknown = set(methods) - set(METHODS)
  if unknown or "compound" not in methods:
    raise ValueError(f"methods must include 'compound' and be among {METHODS}, got {methods}.")
  channels = getattr(proxy, "channels", 3)
  base_model, _ = scaled(base_model_fn, alpha, beta, gamma, 0, base_resolution)
  base = proxy.score(base_model, base_resolution)
  rows = []

  def add(method, phi, d, w, model, resolution):
    result = proxy.score(model, resolution)
    rows.append({"method": method, "phi": int(phi), "depth_mult": float(d), "width_mult": float(w),
                 "resolution": int(resolution), "macs_ratio": result["macs"] / base["macs"],
                 "nominal_ratio": float(constraint(alpha, beta, gamma)**phi), **result})

  for phi in range(0, int(max_phi) + 1):
    d, w, _ = compound_scale(phi, alpha, beta, gamma)
    model, resolution = scaled(base_model_fn, alpha, beta, gamma, phi, base_resolution)
    add("compound", phi, d, w, model, resolution)
    compound = rows[-1]
    for method in methods:
      if method == "compound":
        continue
      if phi == 0:  # every method starts from the base network
        rows.append(dict(compound, method=method))
        continue
      (d, w, _), model, resolution = matched(base_model_fn, method, compound["macs"],
                                             base_resolution=base_resolution, channels=channels)
      add(method, phi, d, w, model, resolution)
  return rows


def subsample(triples: np.ndarray, count: int, *, keep: Sequence[float] = PAPER) -> np.ndarray:
  """``count`` triples evenly spaced over ``triples`` (its order), always including ``keep``
  when it is one of them (count <= 0: all)."""
  triples = np.asarray(triples, np.float64)
  if count <= 0 or count >= len(triples):
    return triples
  ids = set(np.linspace(0, len(triples) - 1, count).round().astype(int).tolist())
  hit = np.flatnonzero(np.all(np.isclose(triples, keep), axis=1))
  if len(hit) and int(hit[0]) not in ids:
    ids.discard(max(ids))
    ids.add(int(hit[0]))
  return triples[sorted(ids)]


@dataclasses.dataclass(frozen=True)
class Results:
  """The scaling study's numbers.

  Attributes:
    search: :func:`search` rows (best first); chosen: the triple scaled up;
    paper_rank: the paper's triple's rank in the search (0: not scored).
    scaling: :func:`scale_up` rows; num_feasible: the grid's size before any subsampling;
    seconds: the study's wall time.
  """

  search: list[dict[str, Any]]
  chosen: tuple[float, float, float]
  paper_rank: int
  scaling: list[dict[str, Any]]
  num_feasible: int
  seconds: float


def study(config) -> Results:
  """The grid search at phi = 1, then scaling by phi = 1 .. ``config.max_phi``, from a config
  (experiments/configs/scaling.py)."""
  t0 = time.perf_counter()
  splits = sources.subsets(config.dataset, {"train": config.num_train, "val": config.num_val},
                           seed=config.data_seed, data_dir=config.data_dir or None)
  num_classes = int(max(int(s["label"].max()) for s in splits.values())) + 1
  base_fn = functools.partial(tiny_efficientnet, num_classes=num_classes,
                              base_width=float(config.base_width),
                              stages=tuple(tuple(s) for s in config.stages))
  tx = optax.adam(float(config.learning_rate))
  proxy = Proxy(splits, tx, num_steps=int(config.num_steps), batch_size=int(config.batch_size),
                seeds=list(range(config.seed, config.seed + config.num_seeds)))
  grid = feasible_grid(float(config.step), float(config.tol))
  triples = subsample(grid, int(config.max_triples))
  rows = search(base_fn, proxy, triples, base_resolution=int(config.base_resolution))
  paper_rank = next((r["rank"] for r in rows
                     if np.allclose((r["alpha"], r["beta"], r["gamma"]), PAPER)), 0)
  chosen = (PAPER if config.scale_with == "paper" else
            (rows[0]["alpha"], rows[0]["beta"], rows[0]["gamma"]))
  scaling = scale_up(base_fn, proxy, *chosen, max_phi=int(config.max_phi),
                     base_resolution=int(config.base_resolution))
  return Results(search=rows, chosen=tuple(float(c) for c in chosen), paper_rank=int(paper_rank),
                 scaling=scaling, num_feasible=len(grid), seconds=time.perf_counter() - t0)
