"""Data parallelism over 2 fake CPU devices gives the 1-device result.

One subprocess (XLA_FLAGS must be set before JAX starts) with 2 host devices runs fit() twice:
on a mesh of device 0 alone and on a mesh of both, on scikit-learn's digits (no TensorFlow).
"""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = """
import json, sys, jax, numpy as np
from sklearn.datasets import load_digits
from jaxcnn.train.config import get_config
from jaxcnn.train.loop import fit
digits = load_digits()
images = (digits.images * 16).clip(0, 255).astype(np.uint8)[..., None]
data = {"train": {"image": images[:1400], "label": digits.target[:1400]},
        "test": {"image": images[1400:], "label": digits.target[1400:]}}
c = get_config()
c.model.name = "simple_cnn_small"
c.num_epochs, c.steps_per_epoch, c.batch_size, c.eval_batch_size = 1, 4, 128, 200
c.schedule.warmup_epochs, c.progress_bar = 0.0, False
out = {n: fit(c, f"{sys.argv[1]}/{n}", data=data, devices=jax.devices()[:n]) for n in (1, 2)}
print("RESULT", json.dumps({"devices": jax.device_count(), **{str(n): r for n, r in out.items()}}))
"""


def test_two_devices_equal_one(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
                      "--xla_force_host_platform_device_count=2"}
  out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads([l for l in out.stdout.splitlines() if l.startswith("RESULT ")][-1][7:])
  assert result["devices"] == 2
  assert "1 cpu device(s)" in out.stdout and "2 cpu device(s)" in out.stdout
  one, two = result["1"], result["2"]
  assert one["steps"] == two["steps"] == 4
  for key in ("train_loss", "val_loss", "test_loss", "test_accuracy"):
    assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-5), key
