"""Test-wide settings: CPU only, quiet TensorFlow, a non-interactive matplotlib backend.

Each test process (each pytest-xdist worker too) prepares tfds datasets, such as the offline
digits, into its own temporary folder, so parallel workers never write the same files and a
user's ~/tensorflow_datasets is left alone.
"""

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["TFDS_DATA_DIR"] = tempfile.mkdtemp(prefix="jaxcnn-tfds-")
