"""Data parallelism over 2 fake CPU devices gives the 1-device result (subprocesses, XLA_FLAGS)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = """
import json, sys, jax, numpy as np
from jaxcnn.train.config import get_config
from jaxcnn.train.loop import fit
c = get_config()
c.model.name = "simple_cnn_small"
c.num_epochs, c.batch_size, c.eval_batch_size, c.progress_bar = 1, 128, 200, False
c.schedule.warmup_epochs = 0.0
arrays = np.load(sys.argv[2])
data = {s: {"image": arrays[s + "_image"], "label": arrays[s + "_label"]} for s in ("train", "test")}
r = fit(c, sys.argv[1], data=data)
print("RESULT", json.dumps({"devices": jax.device_count(), **r}))
"""


def _run(workdir, devices, data_file):
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  out = subprocess.run([sys.executable, "-c", SCRIPT, str(workdir), str(data_file)], env=env, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT "):])


def test_two_devices_equal_one(tmp_path):
  from jaxcnn.data import datasets  # loaded once here; the subprocesses skip tensorflow
  data_file = tmp_path / "digits.npz"
  np.savez(data_file, **{f"{s}_{k}": v for s in ("train", "test")
                         for k, v in datasets.load("digits", s).items()})
  one = _run(tmp_path / "one", 1, data_file)
  two = _run(tmp_path / "two", 2, data_file)
  assert one["devices"] == 1 and two["devices"] == 2
  for key in ("train_loss", "val_loss", "test_loss", "test_accuracy"):
    assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-5), key
