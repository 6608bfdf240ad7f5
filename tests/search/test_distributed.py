"""search.Distributed on a local Ray (2 CPUs): same search as local, order, metrics, failures."""

import os
import sys
import time
import warnings

import jax
import numpy as np
import pytest

from jaxcnn import search
from jaxcnn.search import benchmarks, distributed

SEARCH_IMPORTED_RAY = "ray" in sys.modules  # no other module of the suite imports ray
ray = pytest.importorskip("ray")

SPACE = search.Space({f"c{i}": tuple(range(4)) for i in range(4)})
TABLE = np.asarray(benchmarks.planted(SPACE, seed=0)[0])
# Codes outside the space in the first choice, which a search never asks: 4 = slow (0.3 s, then
# scored as 0), 5 = raises, 6 = kills its worker process.
SLOW, RAISE, CRASH = 4, 5, 6
# One CPU thread per worker's XLA.
ENV = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}


def value(arch):
  code = int(arch[0])
  if code == RAISE:
    raise ValueError(f"planted failure at {arch.tolist()}")
  if code == CRASH:
    os._exit(1)
  if code == SLOW:
    time.sleep(0.3)
  return {"accuracy": TABLE[tuple(arch % 4)], "macs": float(arch.sum())}


def make_evaluator():
  return search.Lookup(value)


def expected(archs):
  """The rewards and metrics, computed directly from the table."""
  archs = np.asarray(archs)
  return TABLE[tuple((archs % 4).T)], archs.sum(1).astype(np.float32)


@pytest.fixture(scope="module")
def pool():
  ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
  t0 = time.perf_counter()
  with warnings.catch_warnings():  # Ray starts its processes with fork + exec
    warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
  ev = search.Distributed(make_evaluator, num_workers=2, batch_size=2, env=ENV, timeout=60)
  ev.evaluate(np.zeros((2, 4), np.int32))  # both actors built
  print(f"ray.init and two actors built: {time.perf_counter() - t0:.1f} s")
  yield ev
  ev.close()
  ray.shutdown()


def test_search_equals_the_local_search(pool):
  strategy = search.strategies.get("evolution", population_size=8, sample_size=3)
  key = jax.random.PRNGKey(0)
  local = search.run(SPACE, strategy, make_evaluator(), budget=30, key=key, batch_size=5,
                     progress=False)
  remote = search.run(SPACE, strategy, pool, budget=30, key=key, batch_size=5, progress=False)
  assert remote.history == local.history  # batches of 2, 2, 1 per step
  assert remote.best == local.best
  rewards, macs = expected(remote.archs)
  np.testing.assert_array_equal(remote.rewards, rewards)
  assert [h["macs"] for h in remote.history] == macs.tolist()


@pytest.mark.parametrize("batch_size", [3, None])
def test_results_in_order_with_uneven_batches(pool, batch_size):
  archs = np.asarray([[SLOW, 1, 2, 3], [1, 1, 0, 0], [2, 3, 1, 0], [SLOW, 0, 0, 1], [3, 3, 3, 3],
                      [0, 2, 2, 1], [1, 0, 3, 2]], np.int32)
  assert distributed.split(7, batch_size, 2) == ([(0, 3), (3, 6), (6, 7)] if batch_size else
                                                 [(0, 4), (4, 7)])
  pool.batch_size = batch_size  # (a second pool would wait for the CPUs this one holds)
  try:
    rewards = pool(archs)  # the slow first batch finishes after the others
  finally:
    pool.batch_size = 2
  want, macs = expected(archs)
  np.testing.assert_array_equal(rewards, want)
  np.testing.assert_array_equal(pool.last_metrics["accuracy"], want)
  np.testing.assert_array_equal(pool.last_metrics["macs"], macs)
  assert set(pool.last_metrics) == {"accuracy", "macs"}


def test_a_worker_exception_names_the_batch_and_carries_its_traceback(pool):
  archs = np.asarray([[0, 0, 0, 0], [1, 1, 1, 1], [RAISE, 2, 0, 1]], np.int32)
  with pytest.raises(RuntimeError, match=r"(?s)archs 2:3 \(first \[5, 2, 0, 1\]\).*"
                                         r"test_distributed.py\", line \d+, in value.*"
                                         r"ValueError: planted failure at \[5, 2, 0, 1\]"):
    pool.evaluate(archs)
  np.testing.assert_array_equal(pool(archs[:2]), expected(archs[:2])[0])  # still usable


@pytest.mark.slow  # a worker process killed and restarted: 10-20 s of Ray start-up
def test_a_crashed_worker_is_an_error_not_a_hang_and_is_replaced(pool):
  archs = np.asarray([[CRASH, 0, 0, 0], [1, 1, 1, 1]], np.int32)
  t0 = time.perf_counter()
  with pytest.raises(RuntimeError, match=r"archs 0:2 .*the Ray worker died"):
    pool.evaluate(archs)
  assert time.perf_counter() - t0 < 30
  good = np.asarray([[0, 1, 2, 3], [3, 2, 1, 0], [1, 1, 1, 1], [2, 2, 2, 2]], np.int32)
  np.testing.assert_array_equal(pool(good), expected(good)[0])  # both actors serve again


def test_timeout(pool):
  pool.timeout = 0.05
  try:
    with pytest.raises(TimeoutError, match=r"archs \[\(0, 1\)\]"):
      pool.evaluate(np.asarray([[SLOW, 0, 0, 0]], np.int32))
  finally:
    pool.timeout = 60


def test_bad_arguments_and_a_venv_without_ray(pool, monkeypatch):
  with pytest.raises(ValueError, match="num_workers >= 1"):
    search.Distributed(make_evaluator, num_workers=0)
  with pytest.raises(ValueError, match="make_evaluator must be a callable"):
    search.Distributed(search.Lookup(value))  # an evaluator instead of its factory
  monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
  with pytest.raises(ImportError, match=r'pip install "jaxcnn\[ray\]"'):
    search.Distributed(make_evaluator)


def test_merge_and_plain_callables():
  parts = [{"acc": np.asarray([0.5, 0.25])}, {"acc": np.asarray([1.0])}]
  np.testing.assert_array_equal(distributed.merge(parts, [(0, 2), (2, 3)])["acc"], [0.5, 0.25, 1])
  with pytest.raises(ValueError, match=r"archs 2:3 returned metrics \['loss'\]"):
    distributed.merge([{"acc": np.zeros(2)}, {"loss": np.zeros(1)}], [(0, 2), (2, 3)])
  archs = np.asarray([[1, 2], [3, 0]], np.int32)
  rewards, metrics = distributed.evaluate_batch(lambda a: a.sum(1), archs)  # no metrics
  assert rewards.dtype == np.float32 and rewards.tolist() == [3, 3] and metrics == {}
  with pytest.raises(ValueError, match="1 rewards for 2 architectures"):
    distributed.evaluate_batch(lambda a: a[:1, 0], archs)


def test_importing_search_does_not_import_ray():
  assert not SEARCH_IMPORTED_RAY
