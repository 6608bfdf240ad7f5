"""Test-wide settings: CPU only, quiet TensorFlow, a non-interactive matplotlib backend, and one
persistent compilation cache per test session.

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
