"""Evaluators: ``evaluate(archs int32 [n, L]) -> rewards float32 [n]``, with metrics beside.

Every evaluator here is an :class:`Evaluator`: calling it returns the rewards (what
:func:`jaxcnn.search.run` needs), :meth:`Evaluator.evaluate` returns ``(rewards, metrics)``
(``metrics``: a dict of ``[n]`` arrays, e.g. accuracy, loss, params, macs) and ``last_metrics``
keeps the metrics of the latest call. Three kinds:

* :class:`Lookup`: a table or any callable (a benchmark's recorded accuracies), for comparing
  strategies cheaply;
* :class:`Trained`: each candidate trained for a step budget by the population trainer; the
  candidates of one batch that build the same model (and every seed of a candidate) train
  together as one population under ``vmap``;
* :class:`SharedWeights`: children of a trained supernet evaluated with its shared weights, the
  whole space one compiled program (:mod:`jaxcnn.search.supernet`).

:func:`jaxcnn.search.costs.Constrained` wraps any of them with parameter and multiply-add costs
and a constrained (MnasNet) reward.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.search import supernet as sn
from jaxcnn.train.population import Population
from jaxcnn.train.steps import cross_entropy

Metrics = dict[str, np.ndarray]


def _archs(archs: Any) -> np.ndarray:
  a = np.asarray(archs)
  if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
    raise ValueError(f"archs must be integer option indices of shape [n, L], got {a.dtype}"
                     f"{list(a.shape)}.")
  return a.astype(np.int32)


def _unique(archs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The distinct rows in first-seen order, and each row's index into them."""
  _, first, inverse = np.unique(archs, axis=0, return_index=True, return_inverse=True)
  order = np.argsort(first)  # unique rows by first appearance
  rank = np.empty_like(order)
  rank[order] = np.arange(len(order))
  return archs[np.sort(first)], rank[inverse.reshape(-1)]


class Evaluator:
  """Base class: subclasses implement :meth:`evaluate`."""

  last_metrics: Metrics | None = None

  def evaluate(self, archs: Any) -> tuple[np.ndarray, Metrics]:
    """``(rewards float32 [n], {metric: [n]})`` of ``archs`` int [n, L]."""
    raise NotImplementedError

  def __call__(self, archs: Any) -> np.ndarray:
    rewards, metrics = self.evaluate(archs)
    self.last_metrics = metrics
    return rewards


class Lookup(Evaluator):
  """Rewards read from a table: a dense array of shape ``num_options``, a mapping or a callable.

  Args:
    table: an array indexed by the option indices; or a mapping ``key(arch) -> value``; or a
      callable ``fn(arch int32 [L]) -> value``. A value is a reward, or a mapping of metrics
      holding ``reward_key``.
    key: turns an architecture into a mapping key (default: the tuple of its indices); e.g.
      ``lambda a: nasbench201.to_string(nasbench201.arch_ops(a))``.
    reward_key: the metric used as reward when the values are mappings.
  """

  def __init__(self, table: Any, *, key: Callable[[np.ndarray], Any] | None = None,
               reward_key: str = "accuracy"):
    self.key = key or (lambda a: tuple(int(i) for i in a))
    self.reward_key = reward_key
    if callable(table) and not isinstance(table, Mapping):
      self.fn = table
    elif isinstance(table, Mapping):
      def fn(arch):
        k = self.key(arch)
        if k not in table:
          raise KeyError(f"Architecture {k!r} is not in the lookup table ({len(table)} entries).")
        return table[k]
      self.fn = fn
    else:
      array = np.asarray(table, np.float32)
      def fn(arch):
        if len(arch) != array.ndim:
          raise ValueError(f"The table has {array.ndim} axes, the architecture {len(arch)} "
                           "choices.")
        return array[tuple(arch)]
      self.fn = fn

  def evaluate(self, archs: Any) -> tuple[np.ndarray, Metrics]:
    values = [self.fn(a) for a in _archs(archs)]
    if values and isinstance(values[0], Mapping):
      names = list(values[0])
      if self.reward_key not in names:
        raise ValueError(f"Table values hold {names}; no {self.reward_key!r} to use as reward.")
      metrics = {k: np.asarray([v[k] for v in values], np.float32) for k in names}
      return metrics[self.reward_key].copy(), metrics
    rewards = np.asarray(values, np.float32).reshape(-1)
    return rewards, {"reward": rewards.copy()}


class Trained(Evaluator):
  """Each candidate trained for ``num_steps`` by :class:`~jaxcnn.train.population.Population`.

  The reward is the mean over ``seeds`` of the final accuracy on ``split``. Candidates that build
  equal models (duplicates in a batch, which evolution asks often) and all seeds of one
  candidate train together as one population (one compiled step, ``vmap`` over models);
  results are cached per model, since training is deterministic in the seeds.

  Args:
    build: ``build(arch int32 [L]) -> flax Module`` (e.g. ``nasbench201.build``).
    source: a :mod:`jaxcnn.data.sources` source with ``split``.
    tx: the optax chain.
    num_steps, batch_size: the step budget.
    seeds: the seeds each candidate is trained with.
    split: the evaluation split.
    preprocess: as in :class:`~jaxcnn.train.population.Population`.
    cache: reuse the result of a model trained before.
  """

  def __init__(self, build: Callable[[np.ndarray], Any], source: Any,
               tx: optax.GradientTransformation, *, num_steps: int, batch_size: int,
               seeds: Sequence[int] = (0,), split: str = "val", preprocess: Any = None,
               cache: bool = True):
    if num_steps < 1 or batch_size < 1 or not len(seeds):
      raise ValueError(f"Need num_steps >= 1, batch_size >= 1 and a seed, got {num_steps}, "
                       f"{batch_size}, {list(seeds)}.")
    self.build, self.source, self.tx = build, source, tx
    self.num_steps, self.batch_size = int(num_steps), int(batch_size)
    self.seeds, self.split, self.preprocess = [int(s) for s in seeds], split, preprocess
    self.cache: dict[Any, dict[str, float]] | None = {} if cache else None
    self.num_trained = 0  # populations trained (cache misses)

  def _train(self, model: Any) -> dict[str, float]:
    t0 = time.perf_counter()
    pop = Population(model, self.tx, num_models=len(self.seeds), preprocess=self.preprocess)
    state, keys = pop.init(self.seeds, self.source.input_shape)
    _, history = pop.train(state, keys, self.source, num_steps=self.num_steps,
                           batch_size=self.batch_size, eval_splits=[self.split])
    self.num_trained += 1
    return {"accuracy": float(np.mean(history[f"{self.split}_accuracy"][-1])),
            "loss": float(np.mean(history[f"{self.split}_loss"][-1])),
            "train_loss": float(np.mean(history["train_loss"][-1])),
            "seconds": time.perf_counter() - t0}

  def evaluate(self, archs: Any) -> tuple[np.ndarray, Metrics]:
    archs = _archs(archs)
    unique, index = _unique(archs)
    results = []
    for arch in unique:
      model = self.build(arch)
      if self.cache is not None and model in self.cache:
        results.append(dict(self.cache[model], seconds=0.0))
        continue
      r = self._train(model)
      if self.cache is not None:
        self.cache[model] = r
      results.append(r)
    metrics = {k: np.asarray([results[i][k] for i in index], np.float32) for k in results[0]}
    return metrics["accuracy"].copy(), metrics


def train_supernet(supernet: Any, tx: optax.GradientTransformation, source: Any, *,
                   num_steps: int, batch_size: int, seed: int = 0, preprocess: Any = None
                   ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """One-shot training by uniform single-path sampling (a fresh path every step).

  The population trainer trains the supernet unchanged (its training call draws the path from
  the step's ``"dropout"`` key: :class:`~jaxcnn.search.supernet.SuperNet`,
  :class:`~jaxcnn.search.nasnet.SuperNet`). Returns the (unstacked) variables and the training
  history.

  References: Guo et al. 2020, "Single Path One-Shot Neural Architecture Search with Uniform
  Sampling".
  """
  pop = Population(supernet, tx, num_models=1, preprocess=preprocess)
  state, keys = pop.init([seed], source.input_shape)
  state, history = pop.train(state, keys, source, num_steps=num_steps, batch_size=batch_size,
                             eval_splits=[])
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  return jax.tree.map(lambda x: x[0], variables), history


class SharedWeights(Evaluator):
  """Children of a supernet evaluated with its weights: accuracy on ``split``, no training.

  One compiled program serves every architecture (:func:`supernet.child_logits`); ``mode``
  chooses ``vmap`` over the children of a call or a ``lax.map`` (``"auto"``: per backend).

  Args:
    supernet: a supernet that declares its architectures' space
      (:func:`~jaxcnn.search.supernet.arch_space`): the NAS-Bench-201
      :class:`~jaxcnn.search.supernet.SuperNet` or :class:`~jaxcnn.search.nasnet.SuperNet`;
      the archs evaluated lie in that space.
    variables: its (trained) ``{"params", "batch_stats"}``.
    source: a source holding ``split``.
    split: the evaluation split.
    preprocess: a function applied to the images (default: cast to float32).
    mode: ``"auto"``, ``"vmap"`` or ``"map"``.
  """

  def __init__(self, supernet: Any, variables: Any, source: Any, *, split: str = "val",
               preprocess: Callable[[jax.Array], jax.Array] | None = None, mode: str = "auto"):
    self.supernet, self.variables, self.source, self.split = supernet, variables, source, split
    self.preprocess = preprocess or (lambda x: x.astype(jnp.float32))
    self.mode = sn.resolve_mode(mode)

  def evaluate(self, archs: Any) -> tuple[np.ndarray, Metrics]:
    archs = _archs(archs)
    correct = loss = count = 0.0
    for batch in self.source.eval_batches(self.split):
      x = self.preprocess(batch["image"])
      logits = sn.child_logits(self.supernet, self.variables, x, archs, mode=self.mode)
      mask = batch.get("mask", jnp.ones(batch["label"].shape, jnp.float32))
      hit = (jnp.argmax(logits, -1) == batch["label"][None]).astype(jnp.float32)
      correct = correct + (hit * mask).sum(-1)
      ce = jax.vmap(lambda z: cross_entropy(z, batch["label"]))(logits)
      loss = loss + (ce * mask).sum(-1)
      count = count + mask.sum()
    correct, loss, count = jax.device_get((correct, loss, count))
    accuracy = np.asarray(correct / count, np.float32)
    return accuracy.copy(), {"accuracy": accuracy, "loss": np.asarray(loss / count, np.float32)}
