"""The GPU benchmark suite: one command, one table, under 8 minutes on one H100/H200-class GPU.

Rows (each times the training core of jaxcnn; compilation is timed apart and excluded):

* ``resnet50_train``: ResNet-50 train-step images/s, bfloat16 compute, batch 256, 224x224x3
  synthetic pixels, 1000 classes; ``resnet50_mfu``: model-FLOPs utilisation, ``6 * MACs`` per image
  (forward 2 flops per multiply-add, backward twice the forward; MACs from
  :func:`jaxcnn.models.flops`) times images/s over the GPU's peak dense bfloat16 FLOP/s.
* ``speedrun_time_to_94``: airbench94's recipe (``experiments/configs/cifar10_speedrun.py``) on the
  real CIFAR-10 from ``--data_dir``: training seconds of a 9.9-epoch run (whitening fit included;
  compilation and the final evaluation excluded) when the runs' mean test accuracy reaches 94%,
  else ``not reached`` with the accuracies.
* ``resnet20_train``: ResNet-20 train-step images/s, bfloat16, batch 128, 32x32x3 synthetic pixels.
* ``population_speedup``: 16 small CNNs (``simple_cnn``) trained as one vmapped population against
  the same 16 trained one after another (same steps, same compiled step reused), wall time ratio.
* ``search_throughput``: candidates per second of a random search over learning rate x weight
  decay whose evaluator trains each batch of 16 candidates as one population and scores them on
  held-out images.

It needs JAX with CUDA, flax, optax, orbax, tqdm and matplotlib; not TensorFlow, tensorflow-
datasets or ml_collections (nothing it imports loads them). CIFAR-10 is read from ``--data_dir``
(``train.npz`` and ``test.npz`` in the layout of ``jaxcnn.data.local``; ``/data/`` is git-ignored)::

  mkdir -p data && cp -r ../shared/data/cifar10 data/
  python benchmarks/gpu_suite.py --data_dir data/cifar10 --json runs/gpu_suite.json
  python benchmarks/gpu_suite.py --smoke        # every row at toy sizes on CPU, in seconds

Without a GPU (and without ``--smoke``) it stops at once with a line starting ``no GPU``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "experiments" / "configs" / "cifar10_speedrun.py"

# Peak dense bfloat16 tensor-core FLOP/s by device kind (NVIDIA data sheets, without sparsity).
PEAK_BF16 = (
    ("H200", 989e12),
    ("H100 SXM", 989e12),
    ("H100 80GB HBM3", 989e12),  # how JAX names the H100 SXM
    ("A100", 312e12),
)


def peak_flops(device_kind: str) -> float | None:
  """The peak dense bfloat16 FLOP/s of a device kind, or None when it is not in the table."""
  for key, value in PEAK_BF16:
    if key.lower() in device_kind.lower():
      return value
  return None


@dataclasses.dataclass
class Row:
  """One line of the table: ``value`` is a number, or a word (``not reached``, ``unknown``,
  ``error``)."""

  name: str
  value: float | str
  unit: str
  setting: str
  notes: str = ""

  def cell(self) -> str:
    if isinstance(self.value, str):
      return self.value
    return f"{self.value:,.1f}" if abs(self.value) >= 100 else f"{self.value:.3g}"


@dataclasses.dataclass(frozen=True)
class Sizes:
  """Every size the rows use: the full suite, or the CPU smoke run."""

  resnet50: dict[str, Any]
  resnet50_batch: int
  resnet50_input: tuple[int, int, int]
  resnet20: dict[str, Any]
  resnet20_batch: int
  min_seconds: float
  speedrun_model: dict[str, Any]
  speedrun_runs: int
  speedrun_epochs: float | None  # None: the recipe's
  speedrun_batch: int | None
  speedrun_train: int | None  # None: the whole training split
  speedrun_test: int | None
  whitening_images: int | None
  cnn: str
  population: int
  population_steps: int
  population_batch: int
  search_budget: int
  search_steps: int
  search_val: int


FULL = Sizes(
    resnet50={}, resnet50_batch=256, resnet50_input=(224, 224, 3),
    resnet20={}, resnet20_batch=128, min_seconds=5.0,
    speedrun_model={}, speedrun_runs=3, speedrun_epochs=None, speedrun_batch=None,
    speedrun_train=None, speedrun_test=None, whitening_images=None,
    cnn="simple_cnn", population=16, population_steps=100, population_batch=128,
    search_budget=64, search_steps=100, search_val=1000)
SMOKE = Sizes(
    resnet50={"stage_sizes": (1,), "num_filters": 4, "stem_features": 4},
    resnet50_batch=2, resnet50_input=(32, 32, 3),
    resnet20={"stage_sizes": (1,), "num_filters": 4, "stem_features": 4}, resnet20_batch=4, min_seconds=0.0,
    speedrun_model={"widths": (8, 8, 8)}, speedrun_runs=1, speedrun_epochs=1.0,
    speedrun_batch=32, speedrun_train=128, speedrun_test=64, whitening_images=64,
    cnn="simple_cnn_small", population=4, population_steps=2, population_batch=8,
    search_budget=4, search_steps=2, search_val=32)


def one_device_mesh() -> Any:
  """The data mesh of the first device only: every row measures one GPU."""
  import jax  # pylint: disable=g-import-not-at-top

  from jaxcnn.data import sources  # pylint: disable=g-import-not-at-top

  return sources.default_mesh(jax.devices()[:1])


def load_recipe() -> Any:
  """``experiments/configs/cifar10_speedrun.py`` as a module (its RECIPE needs no ml_collections)."""
  spec = importlib.util.spec_from_file_location("cifar10_speedrun", CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


# ------------------------------------------------------------------------------------------------
# Data.


def load_cifar10(data_dir: str | None, smoke: bool) -> tuple[dict[str, Any], str]:
  """``{"train", "test"}`` uint8 splits and where they came from (synthetic in a smoke run
  without ``--data_dir``)."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  if data_dir is None:
    if not smoke:
      raise SystemExit("error: --data_dir is required: a folder with CIFAR-10's train.npz and "
                       "test.npz (e.g. a copy of ../shared/data/cifar10 under the git-ignored data/).")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 256).astype(np.int32)
    images = rng.integers(0, 256, (256, 32, 32, 3)).astype(np.uint8)
    images[..., 0] = np.clip(images[..., 0] // 2 + 12 * labels[:, None, None], 0, 255)
    split = lambda a, b: {"image": images[a:b], "label": labels[a:b]}  # noqa: E731
    return {"train": split(0, 192), "test": split(192, 256)}, "synthetic pixels (smoke)"
  from jaxcnn.data import local  # pylint: disable=g-import-not-at-top

  files = local.npz_splits(data_dir, "cifar10")
  missing = {"train", "test"} - set(files)
  if missing:
    raise SystemExit(f"error: --data_dir {data_dir} must hold train.npz and test.npz (CIFAR-10 in "
                     f"the layout of ../shared/data/cifar10); missing {sorted(missing)}.")
  splits = {}
  for seed, name in enumerate(("train", "test")):
    split = local.load_npz(files[name])
    if split["image"].shape[1:] != (32, 32, 3):
      raise SystemExit(f"error: {files[name]} holds images of shape {split['image'].shape[1:]}, "
                       f"not CIFAR-10's (32, 32, 3).")
    # One fixed shuffle: the shared copy is sorted by class, and the rows take leading subsets.
    order = np.random.default_rng(seed).permutation(len(split["label"]))
    splits[name] = {k: v[order] for k, v in split.items()}
  return splits, f"CIFAR-10 from {data_dir}"


# ------------------------------------------------------------------------------------------------
# Rows.


def train_throughput(model_name: str, overrides: dict[str, Any], *, batch_size: int,
                     input_shape: tuple[int, int, int], num_classes: int,
                     min_seconds: float) -> dict[str, float]:
  """Images/s of the bfloat16 train step on one fixed synthetic batch (compile timed apart)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from jaxcnn.models import create_model, flops  # pylint: disable=g-import-not-at-top
  from jaxcnn.train.optim import make_optimizer  # pylint: disable=g-import-not-at-top
  from jaxcnn.train.state import create_train_state  # pylint: disable=g-import-not-at-top
  from jaxcnn.train.steps import make_train_step  # pylint: disable=g-import-not-at-top

  model = create_model(model_name, num_classes=num_classes, **overrides)
  tx = make_optimizer({"name": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 5e-5},
                      0.1)
  state = create_train_state(model, tx, jax.random.PRNGKey(0), input_shape)
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.integers(0, 256, (batch_size, *input_shape), np.uint8)),
           "label": jnp.asarray(rng.integers(0, num_classes, batch_size, np.int32))}
  step = make_train_step(model, tx, preprocess=lambda x: x.astype(jnp.float32) / 255.0,
                         compute_dtype=jnp.bfloat16)
  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  for _ in range(2):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  steps, elapsed, chunk = 0, 0.0, 5
  while steps < 2 * chunk or elapsed < min_seconds:
    t0 = time.perf_counter()
    for _ in range(chunk):
      state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    elapsed += time.perf_counter() - t0
    steps += chunk
  loss = float(metrics["loss"])
  if not math.isfinite(loss):
    raise FloatingPointError(f"{model_name}: the loss became {loss}.")
  return {"images_per_s": steps * batch_size / elapsed, "step_ms": 1000 * elapsed / steps,
          "compile_s": compile_s, "macs": flops(model, (1, *input_shape)), "steps": steps}


def resnet50_rows(sizes: Sizes, device_kind: str, smoke: bool) -> list[Row]:
  r = train_throughput("resnet50", sizes.resnet50, batch_size=sizes.resnet50_batch,
                       input_shape=sizes.resnet50_input, num_classes=1000,
                       min_seconds=sizes.min_seconds)
  shape = "x".join(map(str, sizes.resnet50_input))
  setting = (f"bf16, batch {sizes.resnet50_batch}, {shape} synthetic pixels"
             + (", toy widths (smoke)" if smoke else ""))
  notes = f"{r['step_ms']:.1f} ms/step over {r['steps']} steps; compile {r['compile_s']:.1f} s"
  achieved = r["images_per_s"] * 6 * r["macs"]
  peak = peak_flops(device_kind)
  mfu: Row
  if peak is None:
    mfu = Row("resnet50_mfu", "unknown", "% of peak",
              f"no peak bf16 FLOP/s known for {device_kind!r}",
              f"achieved {achieved / 1e12:.3g} TFLOP/s (6 x {r['macs'] / 1e9:.3g} GMACs/image)")
  else:
    mfu = Row("resnet50_mfu", 100 * achieved / peak, "% of peak",
              f"peak {peak / 1e12:.0f} TFLOP/s bf16 dense ({device_kind})",
              f"achieved {achieved / 1e12:.3g} TFLOP/s (6 x {r['macs'] / 1e9:.3g} GMACs/image)")
  return [Row("resnet50_train", r["images_per_s"], "images/s", setting, notes), mfu]


def resnet20_rows(sizes: Sizes, device_kind: str, smoke: bool) -> list[Row]:
  del device_kind
  r = train_throughput("resnet20", sizes.resnet20, batch_size=sizes.resnet20_batch,
                       input_shape=(32, 32, 3), num_classes=10, min_seconds=sizes.min_seconds)
  setting = (f"bf16, batch {sizes.resnet20_batch}, 32x32x3 synthetic pixels"
             + (", toy depth and widths (smoke)" if smoke else ""))
  notes = f"{r['step_ms']:.2f} ms/step over {r['steps']} steps; compile {r['compile_s']:.1f} s"
  return [Row("resnet20_train", r["images_per_s"], "images/s", setting, notes)]


def train_recipe(data: dict[str, Any], seeds: list[int], *, together: bool,
                 compute_dtype: Any = "bfloat16", epochs: float | None = None,
                 batch_size: int | None = None, model_overrides: dict[str, Any] | None = None,
                 whitening_images: int | None = None, progress: bool = False) -> dict[str, Any]:
  """Trains airbench94's recipe (``experiments/configs/cifar10_speedrun.py``) from each seed.

  The recipe's parts outside the model and the optimizer: a lookahead step every
  ``recipe["lookahead"]["every"]`` steps and after the last (:mod:`jaxcnn.train.lookahead`, in
  the train step), and the whitening bias frozen after ``recipe["whiten_bias_epochs"]`` epochs.

  ``together``: all seeds as one population (one compiled step: vmapped on a GPU, a loop over the
  models on CPU), timed as one run; else one after another on one compiled step, each timed. A
  warm-up step compiles first (excluded from the times; the whitening fit and the state init are
  included). Returns ``runs`` (per seed: ``seed``, ``accuracy`` on the test split with the
  recipe's test-time augmentation, final ``loss``, ``seconds``) and the run's ``epochs``,
  ``batch_size``, ``steps_per_epoch``, ``total_steps``, ``warmup_s``.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  from jaxcnn.data import augment, sources  # pylint: disable=g-import-not-at-top
  from jaxcnn.models import create_model  # pylint: disable=g-import-not-at-top
  from jaxcnn.models.speedrun import whitening_kernel  # pylint: disable=g-import-not-at-top
  from jaxcnn.train import lookahead  # pylint: disable=g-import-not-at-top
  from jaxcnn.train.optim import freeze, make_optimizer  # pylint: disable=g-import-not-at-top
  from jaxcnn.train.population import Population  # pylint: disable=g-import-not-at-top

  if not seeds:
    raise ValueError("train_recipe needs at least one seed.")
  config = load_recipe()
  recipe = config.RECIPE
  train, test = data["train"], data["test"]
  batch_size = batch_size or recipe["batch_size"]
  epochs = epochs or recipe["epochs"]
  mesh = one_device_mesh()
  source = sources.InMemory({"train": train, "test": test},
                            eval_batch_size=min(1000, len(test["label"])), mesh=mesh)
  steps_per_epoch = source.steps_per_epoch(batch_size)
  total_steps = math.ceil(epochs * steps_per_epoch)
  mean = jnp.asarray(recipe["mean"], jnp.float32)
  std = jnp.asarray(recipe["std"], jnp.float32)
  preprocess = lambda x: (x.astype(jnp.float32) / 255.0 - mean) / std  # noqa: E731
  model = create_model(recipe["model"], tta=recipe["tta"], **(model_overrides or {}))
  tx = make_optimizer({"name": "sgd", "momentum": recipe["momentum"],
                       "nesterov": recipe["nesterov"], "weight_decay": recipe["weight_decay"],
                       "decay_biases": recipe["decay_biases"]},
                      recipe["learning_rate"], schedule=config.schedule(total_steps))
  tx = freeze(tx, lambda path: path != ("whiten", "bias"),
              from_step=recipe["whiten_bias_epochs"] * steps_per_epoch)
  groups = [list(seeds)] if together else [[s] for s in seeds]
  pop = Population(model, tx, num_models=len(groups[0]),
                   label_smoothing=recipe["label_smoothing"],
                   augment=augment.make_augment(recipe["augment"]), preprocess=preprocess,
                   compute_dtype=jnp.dtype(compute_dtype),
                   lookahead=lookahead.Lookahead(total_steps, **recipe["lookahead"]), mesh=mesh)
  # airbench94 fits the whitening to its first 5000 training images (ours are shuffled); every
  # model of the population gets the same filters.
  count = min(whitening_images or recipe["whitening_images"], len(train["label"]))
  whiten_images = jax.device_put(train["image"][:count])
  whitening = jax.jit(lambda x: whitening_kernel(preprocess(x)))
  rep = sources.replicated(pop.mesh)

  def fresh(group: list[int]) -> tuple[Any, Any]:
    state, keys = pop.init(group, source.input_shape)
    stats = dict(state.batch_stats)
    kernel = whitening(whiten_images)
    stats["whiten"] = {
        "kernel": sources.put(jnp.broadcast_to(kernel, (len(group), *kernel.shape)), rep),
        "fitted": sources.put(jnp.ones((len(group),), jnp.bool_), rep)}
    state = state.replace(batch_stats=stats)
    return state.replace(slow=lookahead.init(state)), keys  # the slow weights with the filters

  t0 = time.perf_counter()  # warm-up: compiles the steps, the batch gathers and the evaluation
  state, keys = fresh([10_000 + s for s in groups[0]])
  state, _ = pop.train(state, keys, source, num_steps=1, batch_size=batch_size)
  jax.block_until_ready(state)
  warmup_s = time.perf_counter() - t0

  runs = []
  for group in groups:
    t0 = time.perf_counter()
    state, keys = fresh(group)
    bar = tqdm(total=total_steps, desc=f"seeds {group}", unit="step", disable=not progress,
               file=sys.stderr)
    for step, (state, metrics) in enumerate(
        pop.steps(state, keys, source, batch_size=batch_size, start=0, stop=total_steps), 1):
      if progress and (step % 50 == 0 or step == total_steps):  # reading the loss waits for it
        bar.set_postfix(loss=f"{float(jnp.mean(metrics['loss'])):.3f}", refresh=False)
        bar.update(step - bar.n)
    bar.close()
    jax.block_until_ready((state, metrics))
    seconds = time.perf_counter() - t0
    accuracy = pop.evaluate(state, source, "test")["accuracy"]
    losses = jax.device_get(metrics["loss"])
    runs += [{"seed": s, "accuracy": float(a), "loss": float(l), "seconds": seconds}
             for s, a, l in zip(group, accuracy, losses)]
  return {"runs": runs, "epochs": epochs, "batch_size": batch_size,
          "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "warmup_s": warmup_s}


def speedrun_data(data: dict[str, Any], sizes: Sizes) -> dict[str, Any]:
  """The leading ``sizes.speedrun_train`` / ``speedrun_test`` images of each split (None: all)."""
  limits = {"train": sizes.speedrun_train, "test": sizes.speedrun_test}
  return {name: {k: v[:limits[name]] for k, v in data[name].items()} for name in limits}


def speedrun_rows(sizes: Sizes, data: dict[str, Any], data_note: str) -> list[Row]:
  """airbench94's recipe, ``sizes.speedrun_runs`` runs of new seeds on one compiled step."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  result = train_recipe(speedrun_data(data, sizes), list(range(sizes.speedrun_runs)),
                        together=False, compute_dtype="bfloat16", epochs=sizes.speedrun_epochs,
                        batch_size=sizes.speedrun_batch, model_overrides=sizes.speedrun_model,
                        whitening_images=sizes.whitening_images)
  runs = result["runs"]
  mean_acc = float(np.mean([r["accuracy"] for r in runs]))
  mean_s = float(np.mean([r["seconds"] for r in runs]))
  target = load_recipe().RECIPE["target_accuracy"]
  setting = (f"airbench94, {result['epochs']:g} epochs x {result['steps_per_epoch']} steps of "
             f"batch {result['batch_size']}, bf16, {len(runs)} run(s), {data_note}")
  accs = ", ".join(f"{100 * r['accuracy']:.2f}" for r in runs)
  notes = (f"test accuracy {100 * mean_acc:.2f}% mean ({accs}); {mean_s:.2f} s mean training; "
           f"warm-up with compilation {result['warmup_s']:.1f} s")
  if mean_acc >= target:
    return [Row("speedrun_time_to_94", mean_s, "s", setting, notes)]
  best = max(runs, key=lambda r: r["accuracy"])
  return [Row("speedrun_time_to_94", "not reached", "s", setting,
              f"best {100 * best['accuracy']:.2f}% at {best['seconds']:.2f} s; " + notes)]


def _cnn_source(data: dict[str, Any], *, num_val: int = 0) -> Any:
  from jaxcnn.data import sources  # pylint: disable=g-import-not-at-top

  train = data["train"]
  splits = {"train": {k: v[num_val:] for k, v in train.items()}}
  if num_val:
    splits["val"] = {k: v[:num_val] for k, v in train.items()}
  return sources.InMemory(splits, eval_batch_size=min(500, num_val) if num_val else 500,
                          mesh=one_device_mesh())


def population_rows(sizes: Sizes, data: dict[str, Any], data_note: str) -> list[Row]:
  """16 models as one vmapped population against 16 one-model populations in turn."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from jaxcnn.models import create_model  # pylint: disable=g-import-not-at-top
  from jaxcnn.train.optim import make_optimizer  # pylint: disable=g-import-not-at-top
  from jaxcnn.train.population import Population  # pylint: disable=g-import-not-at-top

  source = _cnn_source(data)
  model = create_model(sizes.cnn, num_classes=10)
  tx = make_optimizer({"name": "sgd", "momentum": 0.9, "nesterov": True}, 0.05)
  preprocess = lambda x: x.astype(jnp.float32) / 255.0  # noqa: E731
  m, steps, batch = sizes.population, sizes.population_steps, sizes.population_batch
  spe = min(source.steps_per_epoch(batch), steps)

  def run(pop: Population, seeds: list[int]) -> float:
    t0 = time.perf_counter()
    state, keys = pop.init(seeds, source.input_shape)
    for state, metrics in pop.steps(state, keys, source, batch_size=batch, start=0, stop=steps,
                                    steps_per_epoch=spe):
      pass
    jax.block_until_ready((state, metrics))
    return time.perf_counter() - t0

  together = Population(model, tx, num_models=m, preprocess=preprocess, mesh=source.mesh)
  alone = Population(model, tx, num_models=1, preprocess=preprocess, mesh=source.mesh)
  run(together, list(range(100, 100 + m)))  # compile
  run(alone, [100])
  vmapped = run(together, list(range(m)))
  sequential = sum(run(alone, [seed]) for seed in range(m))
  setting = (f"{m} x {sizes.cnn}, {steps} steps of batch {batch} each, f32, {data_note}")
  notes = (f"vmapped {vmapped:.2f} s, sequential {sequential:.2f} s "
           f"({m * steps * batch / vmapped:,.0f} vs {m * steps * batch / sequential:,.0f} images/s)")
  return [Row("population_speedup", sequential / vmapped, "x", setting, notes)]


def search_rows(sizes: Sizes, data: dict[str, Any], data_note: str) -> list[Row]:
  """Random search over learning rate x weight decay; each batch trains as one population."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from jaxcnn import search  # pylint: disable=g-import-not-at-top
  from jaxcnn.models import create_model  # pylint: disable=g-import-not-at-top
  from jaxcnn.train.optim import make_optimizer  # pylint: disable=g-import-not-at-top
  from jaxcnn.train.population import Population  # pylint: disable=g-import-not-at-top

  source = _cnn_source(data, num_val=sizes.search_val)
  space = search.Space({"learning_rate": (0.01, 0.02, 0.05, 0.1, 0.2),
                        "weight_decay": (0.0, 1e-4, 5e-4, 1e-3)})
  per_batch = sizes.population
  if sizes.search_budget % per_batch:
    raise ValueError(f"search budget {sizes.search_budget} must be a multiple of {per_batch}.")
  model = create_model(sizes.cnn, num_classes=10)
  tx = make_optimizer({"name": "sgd", "momentum": 0.9, "nesterov": True}, 0.05)
  pop = Population(model, tx, num_models=per_batch,
                   preprocess=lambda x: x.astype(jnp.float32) / 255.0, mesh=source.mesh)
  steps, batch = sizes.search_steps, sizes.population_batch
  spe = min(source.steps_per_epoch(batch), steps)
  calls = [0]

  def evaluate(archs: np.ndarray) -> np.ndarray:
    values = [space.decode(a) for a in np.asarray(archs)]
    hyper = {k: [v[k] for v in values] for k in space.names}
    seeds = list(range(calls[0] * per_batch, (calls[0] + 1) * per_batch))
    calls[0] += 1
    state, keys = pop.init(seeds, source.input_shape, hyperparams=hyper)
    _, history = pop.train(state, keys, source, num_steps=steps, batch_size=batch,
                           eval_splits=["val"], steps_per_epoch=spe, stop_on_nonfinite=False)
    return np.nan_to_num(history["val_accuracy"][-1], nan=0.0)

  strategy = search.strategies.get("random")
  evaluate(np.zeros((per_batch, len(space)), np.int32))  # compile
  t0 = time.perf_counter()
  result = search.run(space, strategy, evaluate, sizes.search_budget, jax.random.PRNGKey(0),
                      batch_size=per_batch, progress=False)
  seconds = time.perf_counter() - t0
  best = result.best[0]
  setting = (f"random search, lr x wd, {per_batch} candidates a batch, {sizes.cnn} "
             f"{steps} steps of batch {batch} + {sizes.search_val} held-out images, {data_note}")
  notes = (f"{sizes.search_budget} candidates in {seconds:.2f} s; best {best['arch']} "
           f"{100 * best['reward']:.1f}%")
  return [Row("search_throughput", sizes.search_budget / seconds, "candidates/s", setting, notes)]


ROWS = ("resnet50", "speedrun", "resnet20", "population", "search")


# ------------------------------------------------------------------------------------------------
# The table.


def table(rows: list[Row], header: str) -> str:
  lines = [header, "", "| benchmark | value | unit | setting | notes |", "|---|---|---|---|---|"]
  lines += [f"| {r.name} | {r.cell()} | {r.unit} | {r.setting} | {r.notes} |" for r in rows]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default=None,
                      help="folder with CIFAR-10's train.npz and test.npz (required unless --smoke)")
  parser.add_argument("--smoke", action="store_true",
                      help="every row at toy sizes, on whatever device is present (CPU in CI)")
  parser.add_argument("--rows", default=",".join(ROWS),
                      help=f"comma-separated subset of {', '.join(ROWS)}")
  parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
  args = parser.parse_args(argv)
  wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
  unknown = sorted(set(wanted) - set(ROWS))
  if unknown or not wanted:
    parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}.")

  if args.smoke and "jax" not in sys.modules:
    # Toy programs: compile fast rather than run fast (LLVM -O0; measured on CPU: 62 -> 37 s of
    # CPU time for the whole smoke run).
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
      os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()
  import jax  # pylint: disable=g-import-not-at-top

  device = jax.devices()[0]
  if device.platform != "gpu" and not args.smoke:
    print(f"no GPU: JAX sees {jax.device_count()} {device.platform} device(s) "
          f"({device.device_kind}); this suite needs one NVIDIA GPU and JAX with CUDA "
          f"(pip install -U 'jax[cuda12]'), or --smoke for a toy run on this device.",
          file=sys.stderr)
    return 2
  if jax.device_count() > 1:
    print(f"note: {jax.device_count()} devices; the suite measures the first.", file=sys.stderr)
  t_start = time.perf_counter()
  sizes = SMOKE if args.smoke else FULL
  data, data_note = (None, "")
  if any(r in wanted for r in ("speedrun", "population", "search")):
    t0 = time.perf_counter()
    data, data_note = load_cifar10(args.data_dir, args.smoke)
    print(f"data: {data_note} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
  builders: dict[str, Callable[[], list[Row]]] = {
      "resnet50": lambda: resnet50_rows(sizes, device.device_kind, args.smoke),
      "speedrun": lambda: speedrun_rows(sizes, data, data_note),
      "resnet20": lambda: resnet20_rows(sizes, device.device_kind, args.smoke),
      "population": lambda: population_rows(sizes, data, data_note),
      "search": lambda: search_rows(sizes, data, data_note),
  }
  rows: list[Row] = []
  failed = False
  for name in ROWS:
    if name not in wanted:
      continue
    t0 = time.perf_counter()
    try:
      new = builders[name]()
    except Exception as e:  # pylint: disable=broad-except  (one row failing keeps the others)
      traceback.print_exc()
      failed = True
      new = [Row(name, "error", "", f"{type(e).__name__}: {' '.join(str(e).split())[:200]}")]
    rows += new
    print(f"{name}: done in {time.perf_counter() - t0:.1f} s: "
          + "; ".join(f"{r.name} {r.cell()} {r.unit}" for r in new), file=sys.stderr)
  total = time.perf_counter() - t_start
  header = (f"jaxcnn GPU suite{' (smoke)' if args.smoke else ''}: {device.device_kind} "
            f"({device.platform}), jax {jax.__version__}, {total:.0f} s in all")
  print(table(rows, header))
  if args.json:
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(
        {"device": device.device_kind, "platform": device.platform, "smoke": args.smoke,
         "seconds": total, "rows": [dataclasses.asdict(r) for r in rows]}, indent=1))
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
