"""Candidate evaluation on a Ray cluster: the strategy stays in the driver, the batches go out.

:class:`Distributed` is an :class:`~jaxcnn.search.evaluators.Evaluator`, so
:func:`jaxcnn.search.run` drives it like a local one (ask -> evaluate -> tell in the driver).
Each call splits the asked architectures into batches and hands them to a pool of long-lived
Ray actors. Every actor builds its evaluator once, from the picklable factory
``make_evaluator()``, and keeps it: loaded data, compiled programs and a
:class:`~jaxcnn.search.evaluators.Trained` cache stay warm across calls, which is why actors
and not one Ray task per batch (a task would rebuild the evaluator, reload the data and
recompile every time). An idle actor takes the next batch, so uneven costs balance out; the
rewards and metrics come back in the order asked.

Ray is an optional extra (``pip install "jaxcnn[ray]"``); importing :mod:`jaxcnn.search` does
not import it.

Example::

  import functools
  from jaxcnn import search
  make = functools.partial(search.Lookup, table)             # picklable; built once per actor
  with search.Distributed(make, num_workers=4, num_cpus=4) as ev:
    result = search.run(space, strategy, ev, budget=200, key=key, batch_size=16)

References: Moritz et al. 2018, "Ray: A Distributed Framework for Emerging AI Applications"
(OSDI), Sec. 3.1 (tasks and actors).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from jaxcnn.search.evaluators import Evaluator, Metrics, _archs

INSTALL = 'pip install "jaxcnn[ray]"'


def _import_ray():
  try:
    import ray  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError(f"search.Distributed needs Ray: {INSTALL}") from e
  return ray


def evaluate_batch(evaluator: Any, archs: np.ndarray) -> tuple[np.ndarray, Metrics]:
  """``(rewards float32 [n], metrics)`` of an evaluator or a plain ``archs -> rewards`` callable.

  A plain callable's metrics are its ``last_metrics`` (if any), as :func:`jaxcnn.search.run`
  reads them.
  """
  if isinstance(evaluator, Evaluator):
    rewards, metrics = evaluator.evaluate(archs)
  else:
    rewards = evaluator(archs)
    metrics = getattr(evaluator, "last_metrics", None) or {}
  rewards = np.asarray(rewards, np.float32).reshape(-1)
  if rewards.shape != (len(archs),):
    raise ValueError(f"The evaluator returned {rewards.size} rewards for {len(archs)} "
                     "architectures.")
  return rewards, {k: np.asarray(v) for k, v in metrics.items()}


class _Worker:
  """The actor: builds the evaluator once and evaluates the batches it is sent."""

  def __init__(self, make_evaluator: Callable[[], Any]):
    self.evaluator = make_evaluator()

  def evaluate(self, archs: np.ndarray) -> tuple[np.ndarray, Metrics]:
    return evaluate_batch(self.evaluator, archs)


def split(n: int, batch_size: int | None, num_workers: int) -> list[tuple[int, int]]:
  """``[(start, stop)]`` covering ``range(n)``: batches of ``batch_size`` (the last one smaller),
  or with ``batch_size=None`` one near-equal batch per worker."""
  if n == 0:
    return []
  if batch_size is None:
    batch_size = -(-n // num_workers)
  return [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]


def merge(parts: list[Metrics], batches: list[tuple[int, int]]) -> Metrics:
  """The batches' metrics concatenated in order; every batch must hold the same names."""
  if not parts:
    return {}
  names = sorted(parts[0])
  for part, (start, stop) in zip(parts, batches):
    if sorted(part) != names:
      raise ValueError(f"The batch of archs {start}:{stop} returned metrics {sorted(part)}, "
                       f"the first batch {names}.")
  return {k: np.concatenate([np.asarray(p[k]).reshape(-1) for p in parts]) for k in parts[0]}


class Distributed(Evaluator):
  """An evaluator whose batches run on Ray actors, each holding one ``make_evaluator()``.

  If Ray is not initialised yet, the constructor starts it: a local Ray with ``num_cpus``
  (``address=None``), or a connection to a running cluster (``address="auto"`` or
  ``"ray://host:10001"``); the dashboard is off and worker logs go to the driver only with
  ``log_to_driver``. An initialised Ray is used as it is.

  Errors: an exception in a worker is raised in the driver as a ``RuntimeError`` naming the
  batch (its positions and first architecture) and carrying the worker's traceback; a worker
  that dies (a crash, an out-of-memory kill) is reported the same way, without hanging, and is
  replaced by a fresh actor for the next call; ``timeout`` seconds without any batch finishing
  raise a ``TimeoutError``.

  Args:
    make_evaluator: a picklable factory (a function, a ``functools.partial``, a class)
      returning an :class:`~jaxcnn.search.evaluators.Evaluator` or any ``archs -> rewards``
      callable; called once in every actor. Ray pickles functions of ``__main__`` by value and
      others by reference, so their module must be importable by the workers (else
      ``ray.cloudpickle.register_pickle_by_value(module)``).
    num_workers: actors in the pool; they hold ``num_workers * cpus_per_worker`` CPUs (and the
      GPUs) while the evaluator lives, so a second pool waits until ``close()`` if the cluster
      has no more.
    batch_size: architectures per batch sent to an actor; None: one near-equal batch per actor
      per call.
    cpus_per_worker, gpus_per_worker: the Ray resources each actor holds (a GPU actor sees only
      its device through ``CUDA_VISIBLE_DEVICES``).
    env: environment variables of the actors' processes, e.g. ``{"JAX_PLATFORMS": "cpu"}`` or
      one XLA CPU thread: ``{"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false "
      "intra_op_parallelism_threads=1"}``.
    timeout: seconds a call waits for the next batch to finish; None: no limit.
    address, num_cpus, log_to_driver: for ``ray.init`` when Ray is not initialised.
  """

  def __init__(self, make_evaluator: Callable[[], Any], *, num_workers: int = 2,
               batch_size: int | None = None, cpus_per_worker: float = 1.0,
               gpus_per_worker: float = 0.0, env: Mapping[str, str] | None = None,
               timeout: float | None = None, address: str | None = None,
               num_cpus: int | None = None, log_to_driver: bool = False):
    ray = _import_ray()
    if not callable(make_evaluator) or isinstance(make_evaluator, Evaluator):
      raise ValueError(f"make_evaluator must be a callable returning an evaluator (a factory, "
                       f"built in every worker), got {make_evaluator!r}.")
    if num_workers < 1 or (batch_size is not None and batch_size < 1):
      raise ValueError(f"Need num_workers >= 1 and batch_size >= 1 (or None), got {num_workers} "
                       f"and {batch_size}.")
    if timeout is not None and timeout <= 0:
      raise ValueError(f"timeout must be > 0 seconds or None, got {timeout}.")
    if not ray.is_initialized():
      ray.init(address=address, num_cpus=num_cpus, include_dashboard=False,
               log_to_driver=log_to_driver, configure_logging=False)
    self._ray = ray
    self.make_evaluator, self.num_workers, self.batch_size = make_evaluator, num_workers, batch_size
    self.timeout = timeout
    options: dict[str, Any] = {"num_cpus": cpus_per_worker, "num_gpus": gpus_per_worker}
    if env:
      options["runtime_env"] = {"env_vars": {str(k): str(v) for k, v in env.items()}}
    self._actor_class = ray.remote(_Worker).options(**options)
    self._actors = [self._new_actor() for _ in range(num_workers)]

  def _new_actor(self):
    return self._actor_class.remote(self.make_evaluator)

  def evaluate(self, archs: Any) -> tuple[np.ndarray, Metrics]:
    ray = self._ray
    if not self._actors:
      raise ValueError("This Distributed evaluator is closed.")
    archs = _archs(archs)
    batches = split(len(archs), self.batch_size, self.num_workers)
    results: list[Any] = [None] * len(batches)
    pending: dict[Any, tuple[int, int]] = {}  # object ref -> (batch index, actor index)
    idle, todo = list(range(len(self._actors))), list(range(len(batches)))
    try:
      while todo or pending:
        while todo and idle:
          b, w = todo.pop(0), idle.pop(0)
          start, stop = batches[b]
          pending[self._actors[w].evaluate.remote(archs[start:stop])] = (b, w)
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.timeout)
        if not ready:
          waiting = [batches[b] for b, _ in pending.values()]
          raise TimeoutError(f"No batch finished within timeout={self.timeout} s; still "
                             f"running: archs {waiting}.")
        ref = ready[0]
        b, w = pending.pop(ref)
        try:
          results[b] = ray.get(ref)
        except ray.exceptions.RayActorError as e:  # the worker process is gone
          self._actors[w] = self._new_actor()
          raise self._error(archs, batches[b], "the Ray worker died (a crash, or make_evaluator "
                                              "failed in it)", e) from None
        except ray.exceptions.RayTaskError as e:  # the evaluator raised
          raise self._error(archs, batches[b], "it raised on a Ray worker", e) from None
        idle.append(w)
    finally:
      for ref in pending:  # drop the rest of a failed call; the actors stay usable
        ray.cancel(ref)
    rewards = np.concatenate([r for r, _ in results]) if results else np.zeros(0, np.float32)
    return rewards, merge([m for _, m in results], batches)

  @staticmethod
  def _error(archs: np.ndarray, batch: tuple[int, int], what: str, e: Exception) -> RuntimeError:
    start, stop = batch
    return RuntimeError(f"Evaluating the batch of archs {start}:{stop} (first "
                        f"{archs[start].tolist()}) failed: {what}:\n{e}")

  def close(self) -> None:
    """Ends the actors (Ray itself keeps running; ``ray.shutdown()`` stops it)."""
    for actor in self._actors:
      self._ray.kill(actor)
    self._actors = []

  def __enter__(self) -> "Distributed":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
