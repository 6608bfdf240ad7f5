"""benchmarks/gpu_suite.py: the --smoke run (what CI runs), the no-GPU stop, its import closure."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.py"
BLOCKED = ("ml_collections", "tensorflow", "tensorflow_datasets")

# Runs a script (or code) with ml_collections, tensorflow and tensorflow_datasets unimportable,
# then names any of them found in sys.modules: what a GPU machine without them would see.
BLOCKER = f"""
import importlib.abc, runpy, sys
BLOCKED = {BLOCKED!r}
class Blocker(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in BLOCKED:
      raise ImportError(name + " is not installed on the GPU machine")
    return None
sys.meta_path.insert(0, Blocker())
target, sys.argv = sys.argv[1], sys.argv[1:]
try:
  if target == "-c":
    exec(sys.argv[1])
  else:
    runpy.run_path(target, run_name="__main__")
finally:
  print("LOADED_BLOCKED", sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED),
        file=sys.stderr)
"""

ROWS = ("resnet50_train", "resnet50_mfu", "speedrun_time_to_94", "resnet20_train",
        "population_speedup", "search_throughput")


def _run(*args, timeout=300):
  return subprocess.run([sys.executable, "-c", BLOCKER, *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=timeout)


def _suite():
  spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
  module = importlib.util.module_from_spec(spec)
  sys.modules.setdefault("gpu_suite", module)  # dataclasses look their module up there
  spec.loader.exec_module(module)
  return sys.modules["gpu_suite"]


def _number(text):
  return float(text.replace(",", ""))


def test_blocker_blocks():
  """The check can fail: importing jaxcnn's training config, which needs ml_collections as the
  full training loop does, under the blocker does (the config imports no JAX: a second less)."""
  out = _run("-c", "import jaxcnn.train.config", timeout=120)
  assert out.returncode != 0 and "ml_collections is not installed" in out.stderr


def test_smoke_prints_every_row_without_ml_collections_or_tensorflow(tmp_path):
  out = _run(str(SUITE), "--smoke", "--json", str(tmp_path / "rows.json"))
  assert out.returncode == 0, out.stderr[-3000:]
  assert "LOADED_BLOCKED []" in out.stderr
  cells = {}
  for line in out.stdout.splitlines():
    parts = [p.strip() for p in line.strip().strip("|").split("|")]
    if len(parts) == 5 and parts[0] in ROWS:
      cells[parts[0]] = parts
  assert sorted(cells) == sorted(ROWS), out.stdout
  for name in ("resnet50_train", "resnet20_train", "population_speedup", "search_throughput"):
    value = _number(cells[name][1])
    assert np.isfinite(value) and value > 0, cells[name]
  assert cells["resnet50_train"][2] == "images/s" and cells["search_throughput"][2] == "candidates/s"
  assert cells["resnet50_mfu"][1] == "unknown"  # no peak for a CPU
  assert float(re.search(r"achieved ([0-9.e+-]+) TFLOP/s", cells["resnet50_mfu"][4])[1]) > 0
  speedrun = cells["speedrun_time_to_94"]
  if speedrun[1] == "not reached":  # a toy run on random pixels: the expected case
    best = re.search(r"best ([0-9.]+)% at ([0-9.]+) s", speedrun[4])
    assert best and 0 <= float(best[1]) <= 100 and float(best[2]) > 0, speedrun
  else:
    assert _number(speedrun[1]) > 0
  rows = __import__("json").loads((tmp_path / "rows.json").read_text())["rows"]
  assert [r["name"] for r in rows] == list(ROWS)


def test_without_a_gpu_it_stops_with_a_clear_line():
  out = _run(str(SUITE), "--data_dir", str(ROOT / "nowhere"), timeout=120)
  assert out.returncode == 2
  assert any(line.startswith("no GPU: ") for line in out.stderr.splitlines()), out.stderr
  assert "LOADED_BLOCKED []" in out.stderr


def test_peak_table():
  suite = _suite()
  assert suite.peak_flops("NVIDIA H200") == 989e12
  assert suite.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
  assert suite.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
  assert suite.peak_flops("NVIDIA H100 PCIe") is None and suite.peak_flops("cpu") is None


def test_data_dir_errors_and_loading(tmp_path):
  suite = _suite()
  with pytest.raises(SystemExit, match="--data_dir is required"):
    suite.load_cifar10(None, smoke=False)
  with pytest.raises(SystemExit, match="missing"):
    suite.load_cifar10(str(tmp_path), smoke=False)
  rng = np.random.default_rng(0)
  for split, n in (("train", 6), ("test", 4)):
    np.savez(tmp_path / f"{split}.npz", images=rng.integers(0, 256, (n, 32, 32, 3), np.uint8),
             labels=np.arange(n) % 10)
  data, note = suite.load_cifar10(str(tmp_path), smoke=False)
  assert data["train"]["image"].shape == (6, 32, 32, 3) and len(data["test"]["label"]) == 4
  assert str(tmp_path) in note
  np.savez(tmp_path / "test.npz", images=np.zeros((2, 28, 28), np.uint8), labels=np.zeros(2, int))
  with pytest.raises(SystemExit, match=r"not CIFAR-10's \(32, 32, 3\)"):
    suite.load_cifar10(str(tmp_path), smoke=False)


def test_unknown_row_is_a_usage_error():
  out = _run(str(SUITE), "--smoke", "--rows", "resnet50,imagenet", timeout=60)
  assert out.returncode == 2 and "unknown rows ['imagenet']" in out.stderr


def test_full_sizes_are_the_issues():
  full = _suite().FULL
  assert (full.resnet50, full.resnet50_batch, full.resnet50_input) == ({}, 256, (224, 224, 3))
  assert full.population == 16 and full.search_budget % full.population == 0
  assert full.speedrun_model == {} and full.speedrun_epochs is None and full.speedrun_train is None


def _speedrun_seeds():
  _suite()  # speedrun_seeds imports gpu_suite: the module registered above
  spec = importlib.util.spec_from_file_location("speedrun_seeds",
                                                ROOT / "benchmarks" / "speedrun_seeds.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_speedrun_seeds_trained_at_once_equal_each_trained_alone(tmp_path, capsys):
  """benchmarks/speedrun_seeds.py --smoke: two seeds as one population give what each seed gives
  trained alone (the gpu_suite row's sequential runs), and the report says so."""
  out = tmp_path / "seeds.json"
  assert _speedrun_seeds().main(["--smoke", "--seeds", "2", "--json", str(out)]) == 0
  printed = capsys.readouterr().out
  report = __import__("json").loads(out.read_text())
  together = report["runs"]
  assert [r["seed"] for r in together] == [0, 1] and report["dtype"] == "float32"
  assert re.search(r"mean [0-9.]+% \(std [0-9.]+, 2 seeds\); airbench94 published 94.01%", printed)
  suite = _suite()
  data, _ = suite.load_cifar10(None, smoke=True)
  sizes = suite.SMOKE
  alone = suite.train_recipe(suite.speedrun_data(data, sizes), [0, 1], together=False, compute_dtype="float32",
                             epochs=sizes.speedrun_epochs, batch_size=sizes.speedrun_batch,
                             model_overrides=sizes.speedrun_model,
                             whitening_images=sizes.whitening_images)["runs"]
  for a, b in zip(together, alone):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-4)
    assert abs(a["accuracy"] - b["accuracy"]) <= 1 / sizes.speedrun_test
  assert together[0]["loss"] != together[1]["loss"]  # two seeds, two runs


def test_speedrun_seeds_usage_errors():
  module = _speedrun_seeds()
  for argv in (["--smoke", "--seeds", "0"], ["--smoke", "--epochs", "-1"]):
    with pytest.raises(SystemExit) as exit_info:
      module.main(argv)
    assert exit_info.value.code == 2


def test_train_recipe_takes_lookahead_steps_and_freezes_the_whitening_bias(monkeypatch):
  """The population takes airbench94's lookahead over the run's steps, its slow weights start
  from the fitted whitening; the whitening bias, and only it, is frozen after 3 epochs (the smoke
  recipe: 4 steps an epoch, 2 epochs here)."""
  from jaxcnn.train import lookahead, optim, population

  suite = _suite()
  froms, lookaheads, starts = [], [], []
  freeze = optim.freeze
  monkeypatch.setattr(optim, "freeze", lambda tx, trainable, from_step: froms.append(
      (trainable(("whiten", "bias")), trainable(("block0", "conv0", "kernel")), from_step))
      or freeze(tx, trainable, from_step=from_step))
  steps = population.Population.steps

  def recording(self, state, *args, **kwargs):
    lookaheads.append(self.lookahead)
    starts.append(np.asarray(state.slow["batch_stats"]["whiten"]["kernel"]))
    np.testing.assert_array_equal(starts[-1], state.batch_stats["whiten"]["kernel"])
    return steps(self, state, *args, **kwargs)

  monkeypatch.setattr(population.Population, "steps", recording)
  data, _ = suite.load_cifar10(None, smoke=True)
  sizes = suite.SMOKE
  suite.train_recipe(suite.speedrun_data(data, sizes), [0], together=True,
                     compute_dtype="float32", epochs=2.0, batch_size=sizes.speedrun_batch,
                     model_overrides=sizes.speedrun_model, whitening_images=64)
  total = 8  # 128 images / 32, 2 epochs
  assert lookaheads[-1] == lookahead.Lookahead(total, every=5, base=0.95, power=3.0)
  assert np.abs(starts[-1]).max() > 0  # the fitted filters, not the zeros of a fresh init
  assert froms == [(False, True, 3 * 4)]
