"""Test-wide settings: CPU only, quiet TensorFlow, a non-interactive matplotlib backend, XLA's
quick-to-compile CPU settings, and one persistent compilation cache per test session.

XLA's backend compile is about three quarters of the suite's time on CPU (measured with
``jax.monitoring`` over tests/test_diagnostics.py: 49.6 s of 63 s). The tests therefore compile
with LLVM at -O0 and XLA:CPU's classic loop emitters (:data:`QUICK_XLA_FLAGS`, appended to any
``XLA_FLAGS`` of the caller, and inherited by the scripts and notebooks the tests start), which
halves that file's CPU time and cuts the compute-heavy tests' too (121 -> 76 s for the default
run, the GPU suite's smoke run, data-parallel fit and the batch-norm study). The semantics are the
same (neither setting allows fast math); ``JAXCNN_TEST_XLA_DEFAULTS=1`` runs the suite with
XLA's default settings instead.

Each test process (each pytest-xdist worker too) prepares tfds datasets, such as the offline
digits, into its own temporary folder, so parallel workers never write the same files and a
user's ~/tensorflow_datasets is left alone.

Many tests compile the same small programs (a simple_cnn_small train step on digits, say); the
session's workers, and the scripts and notebooks they start (``JAXCNN_COMPILATION_CACHE``), share
one fresh compilation cache, so each such program compiles once per session. It starts empty, as
on a fresh clone, and is not the user's ``~/.cache/jaxcnn/xla``.
"""

import os
import tempfile
from pathlib import Path

QUICK_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
if os.environ.get("JAXCNN_TEST_XLA_DEFAULTS", "").lower() not in ("1", "true", "yes"):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {QUICK_XLA_FLAGS}".strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["TFDS_DATA_DIR"] = tempfile.mkdtemp(prefix="jaxcnn-tfds-")

# One folder per session: pytest-xdist gives every worker of a run the same PYTEST_XDIST_TESTRUNUID.
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
if os.environ.get("JAXCNN_COMPILATION_CACHE", "").lower() not in ("0", "off", "false", "no"):
  os.environ["JAXCNN_COMPILATION_CACHE"] = str(
      Path(tempfile.gettempdir()) / f"jaxcnn-test-xla-{_RUN}")

from jaxcnn.train.cache import enable_compilation_cache  # noqa: E402

enable_compilation_cache()


# The longest tests (10-20 s each: the notebooks, the README's main job, the GPU suite's smoke
# run) start first. pytest-xdist hands tests out in collection order, and these are collected
# late; run last, one of them kept a worker busy while the other had nothing left to do.
LONG_FIRST = ("tests/test_studies_run.py::test_notebook_runs",
              "tests/train/test_default_run.py", "tests/test_gpu_suite.py")


def pytest_collection_modifyitems(config, items):
  del config
  rank = lambda item: next((k for k, p in enumerate(LONG_FIRST) if item.nodeid.startswith(p)),
                           len(LONG_FIRST))
  items.sort(key=rank)  # stable: the order within each group is unchanged
