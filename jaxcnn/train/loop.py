"""The training loop: ``fit(config, workdir) -> final metrics``.

Small data sets (digits, MNIST, CIFAR) go to the devices once, as uint8, replicated. Each epoch a
permutation is drawn on device from ``(data key, epoch)``; each step a jitted gather takes the
batch (sharded over the mesh's ``"data"`` axis), and the train step augments, preprocesses and
trains on it. Large data sets (``datasets.info(name).in_memory`` False: imagenette, imagenet2012)
stream host batches from :func:`jaxcnn.data.datasets.stream` (random-resized crops and flips of
``config.image_size``), seeded by ``(seed, epoch)``, through
:func:`~jaxcnn.data.datasets.prefetch_to_device`; their preprocessing is fitted on a bounded
sample (``config.preprocessing_examples`` center crops of training images), and they are
evaluated on their own streamed validation/test splits.

Metrics stay on device until a logging point (every ``log_every_steps``, at epoch ends and
checkpoints), where they are fetched, checked for NaN/inf, and shown. The data order and per-step
randomness depend only on the seed and the step, so a run resumed from a checkpoint reproduces an
uninterrupted one (a streamed run re-reads and skips the interrupted epoch's first batches).

Several models train at once in one vmapped step: ``num_models`` seeds, times the values of a
hyperparameter sweep (``config.sweep.learning_rate``, ``config.sweep.weight_decay``: the values
live in each model's optimizer state). Metrics then hold the mean, ``_std`` and ``_per_model``
values, and ``models`` names each model (``"learning_rate=0.1"``, ``"seed=1"``).

The run folder holds ``config.json``, ``preprocessing.npz`` (the fitted transform),
``metrics.jsonl`` (one record per epoch), ``results.json``, ``loss.png``, ``accuracy.png`` and
``checkpoints/``.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from jaxcnn.train import checkpoint as ckpt
from jaxcnn.train.optim import make_optimizer, make_schedule, set_hyperparams
from jaxcnn.train.state import TrainState, create_train_state
from jaxcnn.train.steps import batch_sharding, make_eval_step, make_train_step, replicated

Split = dict[str, np.ndarray]
SWEEPABLE = ("learning_rate", "weight_decay")  # config.sweep fields; each replaces optimizer.<name>


class NonFiniteLossError(FloatingPointError):
  """The loss (or the parameters) became NaN or infinite; the run stopped."""


def load_data(config: Mapping[str, Any]) -> dict[str, Split]:
  """Train and test splits ``{"image", "label"}`` of ``config.dataset``, in memory."""
  from jaxcnn.data import datasets  # imported here: tensorflow-datasets is slow to import

  data_dir = config["data_dir"] or None
  train = datasets.load(config["dataset"], "train", data_dir=data_dir)
  test = datasets.load(config["dataset"], "test", data_dir=data_dir)
  return {"train": train, "test": test}


def _carve_validation(data: dict[str, Split], config: Mapping[str, Any]) -> dict[str, Split]:
  """Carves ``config.val_size`` out of the training split, stratified, with ``data_seed``."""
  from jaxcnn.data import splits

  if "val" in data or not config["val_size"]:
    return data
  train = data["train"]
  val = config["val_size"]
  val = int(val) if val >= 1 else val  # a count (config files coerce ints to the float field)
  split = splits.train_val_test_split(len(train["label"]), val=val, test=0,
                                      seed=config["data_seed"], labels=train["label"])
  take = lambda idx: {k: np.asarray(v)[idx] for k, v in train.items()}
  return {**data, "train": take(split.train), "val": take(split.val)}


def _check_split(name: str, split: Split) -> Split:
  images, labels = np.asarray(split["image"]), np.asarray(split["label"]).astype(np.int32)
  if images.ndim == 3:  # (N, H, W) grayscale
    images = images[..., None]
  if images.ndim != 4 or len(images) != len(labels):
    raise ValueError(f"Split {name!r} must hold images (N, H, W, C) and labels (N,), got "
                     f"{images.shape} and {labels.shape}.")
  return {"image": images, "label": labels}


def _put(x: Any, sharding) -> jax.Array:
  """Places a host array as a global array (works across hosts: every host holds all of it)."""
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _summary(values: np.ndarray) -> dict[str, Any]:
  """Mean (and, for several models, std and per-model values) of a per-model metric."""
  values = np.atleast_1d(np.asarray(values, np.float64))
  if values.size == 1:
    return {"": float(values[0])}
  return {"": float(values.mean()), "_std": float(values.std()),
          "_per_model": [float(v) for v in values]}


def _add(record: dict[str, Any], name: str, values: np.ndarray) -> None:
  for suffix, v in _summary(values).items():
    record[name + suffix] = v


def _models(config: ml_collections.ConfigDict) -> list[dict[str, Any]]:
  """One entry per model trained at once: its ``seed`` and swept hyperparameter values."""
  sweep = config.get("sweep") or {}
  unknown = sorted(set(sweep.keys()) - set(SWEEPABLE))
  if unknown:
    raise ValueError(f"Cannot sweep {unknown}; sweepable hyperparameters: {', '.join(SWEEPABLE)}.")
  swept = {k: tuple(v) for k, v in sweep.items() if len(v)}
  lengths = {len(v) for v in swept.values()}
  if len(lengths) > 1:
    raise ValueError(f"config.sweep values must have equal lengths (they are zipped), got "
                     f"{ {k: len(v) for k, v in swept.items()} }.")
  if int(config.num_models) < 1:
    raise ValueError(f"num_models must be >= 1, got {config.num_models}.")
  values = [dict(zip(swept, row)) for row in zip(*swept.values())] or [{}]
  return [{"seed": int(config.seed) + s, **v} for v in values
          for s in range(int(config.num_models))]


def _label(model: dict[str, Any], num_seeds: int) -> str:
  parts = [f"{k}={v:g}" for k, v in model.items() if k != "seed"]
  if num_seeds > 1 or not parts:
    parts.append(f"seed={model['seed']}")
  return ",".join(parts)


def _plot(history: list[dict[str, Any]], workdir: Path, labels: Sequence[str] | None) -> None:
  """``loss.png`` and ``accuracy.png``: mean curves, or one curve per model for a sweep."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  epochs = [r["epoch"] for r in history]
  for metric in ("loss", "accuracy"):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for split in ("train", "val", "test"):
      key = f"{split}_{metric}"
      if not history or key not in history[0]:
        continue
      if labels and key + "_per_model" in history[0]:
        for m, label in enumerate(labels):
          ax.plot(epochs, [r[key + "_per_model"][m] for r in history], label=f"{split} {label}")
      else:
        ax.plot(epochs, [r[key] for r in history], label=split)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    if metric == "loss":
      ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(workdir / f"{metric}.png", dpi=100)
    plt.close(fig)


def _initialize_distributed() -> None:
  try:
    jax.distributed.initialize()
  except RuntimeError as e:  # already initialised
    if "already" not in str(e):
      raise


def _epoch_seed(seed: int, epoch: int) -> int:
  """A 31-bit stream seed for ``(seed, epoch)``."""
  return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] >> 1)


def _pad(batch: Split, size: int) -> Split:
  """Pads a host batch to ``size`` examples, with ``mask`` 1 for real and 0 for padded ones."""
  n = len(batch["label"])
  pad = lambda a: np.concatenate([a, np.zeros((size - n, *a.shape[1:]), a.dtype)])
  return {"image": pad(batch["image"]), "label": pad(batch["label"]),
          "mask": (np.arange(size) < n).astype(np.float32)}


class _InMemory:
  """Splits held on the devices as uint8; batches gathered by jitted functions."""

  def __init__(self, splits: dict[str, Split], *, batch_size: int, eval_batch_size: int,
               mesh: Mesh, vmapped: bool):
    rep = replicated(mesh)
    self.splits = {k: {f: _put(v, rep) for f, v in s.items()} for k, s in splits.items()
                   if len(s["label"])}
    self.eval_splits = [k for k in ("val", "test") if k in self.splits]
    self.num_train = len(splits["train"]["label"])
    n_train = self.num_train

    def order_fn(key, epoch):
      return jax.random.permutation(jax.random.fold_in(key, epoch), n_train)

    self.order = jax.jit(jax.vmap(order_fn, in_axes=(0, None)) if vmapped else order_fn,
                         out_shardings=rep)

    def take_fn(images, labels, order, index):
      ids = jax.lax.dynamic_slice_in_dim(order, index * batch_size, batch_size)
      return {"image": images[ids], "label": labels[ids]}

    self.take = jax.jit(jax.vmap(take_fn, in_axes=(None, None, 0, None)) if vmapped else take_fn,
                        out_shardings=batch_sharding(mesh, vmap_models=vmapped))

    def take_eval(images, labels, index):
      ids = index * eval_batch_size + jnp.arange(eval_batch_size)
      n = labels.shape[0]
      safe = jnp.minimum(ids, n - 1)
      return {"image": images[safe], "label": labels[safe], "mask": (ids < n).astype(jnp.float32)}

    self.take_eval = jax.jit(take_eval, out_shardings=batch_sharding(mesh))
    self.eval_batch_size = eval_batch_size

  def train_batches(self, data_keys: jax.Array, epoch: int, start: int,
                    stop: int) -> Iterator[dict[str, jax.Array]]:
    order = self.order(data_keys, epoch)
    train = self.splits["train"]
    for position in range(start, stop):
      yield self.take(train["image"], train["label"], order, position)

  def eval_batches(self, name: str) -> Iterator[dict[str, jax.Array]]:
    split = self.splits[name]
    for index in range(math.ceil(split["label"].shape[0] / self.eval_batch_size)):
      yield self.take_eval(split["image"], split["label"], index)


class _Streamed:
  """A tfds data set streamed through tf.data and prefetched to the devices."""

  def __init__(self, config: ml_collections.ConfigDict, info: Any, *, batch_size: int,
               eval_batch_size: int, mesh: Mesh):
    from jaxcnn.data import datasets

    self.datasets = datasets
    self.config = config
    self.processes = jax.process_count()
    self.batch_size = batch_size // self.processes  # per process
    self.eval_batch_size = eval_batch_size // self.processes
    self.sharding = batch_sharding(mesh)
    self.num_train = info.num_examples["train"]
    names = {"validation": "val", "test": "test"}
    self.eval_splits = [names[k] for k in names if k in info.num_examples]
    self.split_of = {v: k for k, v in names.items()}

  def _stream(self, split: str, **kwargs: Any) -> Iterator[Split]:
    c = self.config
    return self.datasets.stream(c.dataset, split, data_dir=c.data_dir or None,
                                image_size=int(c.image_size), **kwargs)

  def sample(self, num_examples: int) -> np.ndarray:
    """The first ``num_examples`` training images as center crops (deterministic, unshuffled)."""
    batches = self._stream("train", batch_size=min(num_examples, 500), train=False)
    images, count = [], 0
    for batch in batches:
      images.append(batch["image"][:num_examples - count])
      count += len(images[-1])
      if count >= num_examples:
        break
    return np.concatenate(images)

  def train_batches(self, data_keys: Any, epoch: int, start: int,
                    stop: int) -> Iterator[dict[str, jax.Array]]:
    del data_keys  # the stream is seeded by (seed, epoch); every model gets the same batches
    stream = self._stream("train", batch_size=self.batch_size, train=True, num_epochs=None,
                          seed=_epoch_seed(int(self.config.seed), epoch))
    return self.datasets.prefetch_to_device(itertools.islice(stream, start, stop),
                                            sharding=self.sharding)

  def eval_batches(self, name: str) -> Iterator[dict[str, jax.Array]]:
    stream = self._stream(self.split_of[name], batch_size=self.eval_batch_size, train=False)
    padded = (_pad(b, self.eval_batch_size) for b in stream)
    return self.datasets.prefetch_to_device(padded, sharding=self.sharding)


def fit(config: Mapping[str, Any], workdir: str | Path, *, resume: bool = False,
        data: Mapping[str, Split] | None = None,
        devices: Sequence[jax.Device] | None = None) -> dict[str, Any]:
  """Trains ``config.model`` on ``config.dataset`` and returns the final metrics.

  Args:
    config: a config like :func:`jaxcnn.train.config.get_config` (an ml_collections ConfigDict or
      a dict with the same fields).
    workdir: the run folder (created if needed).
    resume: continue from the latest checkpoint in ``workdir`` (starts fresh if there is none).
      Without it, a ``workdir`` that already holds checkpoints is an error.
    data: optional in-memory splits ``{"train": {"image", "label"}, "test": ..., "val": ...}``
      used instead of loading ``config.dataset`` (e.g. from a notebook).
    devices: the devices of the data-parallel mesh (default: all of them).

  Returns:
    ``test_accuracy``, ``test_loss``, ``val_*``, ``train_*`` of the last epoch (with ``_std`` and
    ``_per_model`` when several models train, and ``models`` naming them), ``steps``,
    ``epochs``, ``compile_time_s``, ``images_per_s``, ``wall_time_s``; or, if
    ``stop_after_steps`` cut the run short, ``{"interrupted": True, "steps": ...}``.

  Raises:
    NonFiniteLossError: the loss became NaN/inf; the message names the step and the last good
      checkpoint, which is kept.
    jaxcnn.train.checkpoint.CheckpointError: resuming from an unreadable checkpoint.
  """
  t_start = time.perf_counter()
  config = ml_collections.ConfigDict(
      config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config))
  if config.distributed:
    _initialize_distributed()
  from jaxcnn.data import preprocessing  # noqa: PLC0415 (keeps `import jaxcnn.train` light)
  from jaxcnn.models import create_model

  is_main = jax.process_index() == 0
  workdir = Path(workdir)
  ckpt_dir = workdir / "checkpoints"
  if not resume and ckpt_dir.is_dir() and any(ckpt_dir.iterdir()):
    raise ValueError(f"{workdir} already holds checkpoints: pass resume=True (--resume) to "
                     f"continue that run, or choose a new workdir.")
  models = _models(config)
  num_models = len(models)
  vmapped = num_models > 1
  labels = [_label(m, int(config.num_models)) for m in models] if vmapped else None
  swept = any(k != "seed" for m in models for k in m)
  workdir.mkdir(parents=True, exist_ok=True)
  if is_main:
    saved = workdir / "config.json"
    if resume and saved.exists() and json.loads(saved.read_text()) != json.loads(config.to_json()):
      print(f"Note: the config differs from the one saved in {saved}; using the new one.",
            file=sys.stderr)
    saved.write_text(config.to_json(indent=2) + "\n")

  # Devices: one mesh axis "data" over the devices of every host (one CPU is a mesh of one).
  mesh = Mesh(np.array(list(devices) if devices is not None else jax.devices()), ("data",))
  batch_size, eval_batch_size = int(config.batch_size), int(config.eval_batch_size)
  for what, size in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
    if size % mesh.size:
      raise ValueError(f"{what}={size} must be divisible by the number of devices ({mesh.size}).")
  rep = replicated(mesh)

  # Data: in device memory, or streamed.
  streamed_info = None
  if data is None:
    from jaxcnn.data import datasets
    dataset_info = datasets.info(config.dataset, data_dir=config.data_dir or None)
    num_classes = dataset_info.num_classes
    if not dataset_info.in_memory:
      streamed_info = dataset_info
  if streamed_info is not None:
    source = _Streamed(config, streamed_info, batch_size=batch_size,
                       eval_batch_size=eval_batch_size, mesh=mesh)
    fit_images = source.sample(int(config.preprocessing_examples))
  else:
    raw = dict(data) if data is not None else load_data(config)
    splits = {k: _check_split(k, v) for k, v in _carve_validation(raw, config).items()}
    if data is not None:
      num_classes = int(max(int(s["label"].max()) for s in splits.values() if len(s["label"])) + 1)
    source = _InMemory(splits, batch_size=batch_size, eval_batch_size=eval_batch_size, mesh=mesh,
                       vmapped=vmapped)
    fit_images = splits["train"]["image"]
  input_shape = fit_images.shape[1:]
  transform = preprocessing.fit(config.preprocessing, fit_images)
  del fit_images
  if is_main:
    np.savez(workdir / "preprocessing.npz", **transform.to_dict())
  transform = jax.tree.map(lambda x: _put(x, rep), transform)
  augment = None
  if config.augment:
    from jaxcnn.data.augment import make_augment
    augment = make_augment(tuple(config.augment))

  model_kwargs = {k: v for k, v in config.model.to_dict().items() if k != "name"}
  model = create_model(config.model.name, num_classes=num_classes, **model_kwargs)

  full_epoch = source.num_train // batch_size
  steps_per_epoch = int(config.get("steps_per_epoch", 0)) or full_epoch
  if full_epoch == 0:
    raise ValueError(f"batch_size={batch_size} exceeds the {source.num_train} training examples.")
  if steps_per_epoch > full_epoch and streamed_info is None:
    raise ValueError(f"steps_per_epoch={steps_per_epoch} exceeds one pass over the "
                     f"{source.num_train} training examples ({full_epoch} steps).")
  total_steps = int(config.num_epochs) * steps_per_epoch
  multiplier = make_schedule(config.schedule, learning_rate=1.0, steps_per_epoch=steps_per_epoch,
                             num_epochs=int(config.num_epochs))
  tx = make_optimizer(config.optimizer, config.optimizer.learning_rate, schedule=multiplier)
  hyperparams = {k: np.array([m.get(k, config.optimizer[k]) for m in models], np.float32)
                 for k in SWEEPABLE}

  # State: model m's seed gives its init, its step rng and its data key.
  keys = jnp.stack([jax.random.PRNGKey(m["seed"]) for m in models])
  model_keys, data_keys = jax.vmap(jax.random.split, out_axes=1)(keys)
  init = lambda k: create_train_state(model, tx, k, input_shape, ema=config.ema_decay > 0)
  if vmapped:
    state = jax.vmap(init)(model_keys)
    state = state.replace(opt_state=set_hyperparams(state.opt_state, **hyperparams))
  else:
    state = init(model_keys[0])
  state = jax.tree.map(lambda x: _put(x, rep), state)
  data_keys = _put(data_keys if vmapped else data_keys[0], rep)

  compute_dtype = jnp.dtype(config.dtype)
  train_step = make_train_step(model, tx, label_smoothing=config.label_smoothing, augment=augment,
                               preprocess=transform, compute_dtype=compute_dtype,
                               ema_decay=config.ema_decay, vmap_models=vmapped,
                               shared_batch=streamed_info is not None, mesh=mesh)
  eval_step = make_eval_step(model, preprocess=transform, compute_dtype=compute_dtype,
                             vmap_models=vmapped, mesh=mesh)

  @jax.jit
  def params_finite(s: TrainState) -> jax.Array:
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(s.params)]))

  def evaluate(s: TrainState, name: str) -> dict[str, np.ndarray]:
    totals = None
    for batch in source.eval_batches(name):
      sums = eval_step(s, batch)
      totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(totals)
    return {"loss": totals["loss"] / totals["count"],
            "accuracy": totals["correct"] / totals["count"]}

  # Resume.
  mngr = ckpt.manager(ckpt_dir, max_to_keep=config.keep_checkpoints)
  history: list[dict[str, Any]] = []
  epoch_sums = {"loss": 0.0, "accuracy": 0.0, "steps": 0}
  metrics_path = workdir / "metrics.jsonl"
  if resume and mngr.latest_step() is not None:
    state, loop_state = ckpt.restore(mngr, state)
    epoch_sums = {k: np.asarray(v) if k != "steps" else v
                  for k, v in loop_state["epoch_sums"].items()}
    if metrics_path.exists():
      history = [json.loads(line) for line in metrics_path.read_text().splitlines() if line]
      history = [r for r in history if r["step"] <= int(loop_state["step"])]
  elif resume and is_main:
    print(f"No checkpoint in {ckpt_dir}: starting from scratch.", file=sys.stderr)
  if is_main:
    metrics_path.write_text("".join(json.dumps(r) + "\n" for r in history))
  step = int(jax.device_get(state.step).reshape(-1)[0])

  def good_checkpoint() -> str:
    last = mngr.latest_step()
    return (f"the last good checkpoint is step {last} in {ckpt_dir}" if last is not None
            else "no checkpoint was saved before it")

  def save_checkpoint() -> None:
    if not bool(params_finite(state)):
      mngr.wait_until_finished()
      raise NonFiniteLossError(f"The parameters became NaN/inf by step {step}; not saving them. "
                               f"Stopping: {good_checkpoint()}.")
    ckpt.save(mngr, step, state, {"step": step, "epoch_sums": {
        k: (np.asarray(v).tolist() if k != "steps" else v) for k, v in epoch_sums.items()}})

  # Compile once, ahead of time, and time it.
  batches = source.train_batches(data_keys, step // steps_per_epoch, step % steps_per_epoch,
                                 steps_per_epoch)
  batch = next(batches, None)
  t0 = time.perf_counter()
  if batch is not None:
    train_step = train_step.lower(state, batch).compile()
  compile_time = time.perf_counter() - t0

  bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True,
             disable=not (config.progress_bar and is_main), file=sys.stderr)
  def log(message: str) -> None:  # printed above the progress bar, on the main process only
    if is_main:
      tqdm.write(message, file=sys.stdout)
  log(f"{config.model.name} on {config.dataset}"
      f"{' (streamed)' if streamed_info is not None else ''}: {source.num_train} training "
      f"examples, {steps_per_epoch} steps/epoch, {config.num_epochs} epochs, {num_models} "
      f"model(s), {mesh.size} {mesh.devices.flat[0].platform} device(s); compiled in "
      f"{compile_time:.1f}s")

  pending: list[dict[str, jax.Array]] = []
  epoch_t0, epoch_steps_timed, images_per_s = time.perf_counter(), 0, []
  try:
    while step < total_steps:
      epoch, position = divmod(step, steps_per_epoch)
      if batch is None:
        batches = source.train_batches(data_keys, epoch, position, steps_per_epoch)
        batch = next(batches)
      state, metrics = train_step(state, batch)
      batch = next(batches, None)  # None at the end of the epoch
      pending.append(metrics)
      step += 1
      epoch_end = step % steps_per_epoch == 0
      stop = bool(config.stop_after_steps) and step >= config.stop_after_steps
      checkpoint_now = step == total_steps or (
          config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0)
      if not (step % config.log_every_steps == 0 or epoch_end or checkpoint_now or stop):
        continue

      # Logging point: the only host synchronisation in the loop.
      values = jax.device_get({k: jnp.stack([m[k] for m in pending]) for k in pending[0]})
      first = step - len(pending)
      bad = ~np.isfinite(values["loss"])
      if bad.any():
        row = int(np.argmax(bad.reshape(len(pending), -1).any(axis=1)))
        worst = int(np.argmax(bad[row])) if vmapped else 0
        which = f", model {worst} ({labels[worst]})" if vmapped else ""
        raise NonFiniteLossError(
            f"Loss is {values['loss'][row].tolist()} at step {first + row} (epoch "
            f"{(first + row) // steps_per_epoch + 1}{which}). Stopping: {good_checkpoint()}.")
      epoch_sums["loss"] = epoch_sums["loss"] + values["loss"].sum(axis=0)
      epoch_sums["accuracy"] = epoch_sums["accuracy"] + values["accuracy"].sum(axis=0)
      epoch_sums["steps"] += len(pending)
      epoch_steps_timed += len(pending)
      pending = []
      bar.update(step - bar.n)
      bar.set_postfix(loss=f"{float(np.mean(values['loss'][-1])):.4f}",
                      acc=f"{float(np.mean(values['accuracy'][-1])):.3f}")

      if epoch_end:
        train_time = time.perf_counter() - epoch_t0
        record: dict[str, Any] = {"epoch": epoch + 1, "step": step}
        _add(record, "learning_rate", hyperparams["learning_rate"] * float(multiplier(step - 1)))
        _add(record, "train_loss", epoch_sums["loss"] / epoch_sums["steps"])
        _add(record, "train_accuracy", epoch_sums["accuracy"] / epoch_sums["steps"])
        for name in source.eval_splits:
          result = evaluate(state, name)
          _add(record, f"{name}_loss", result["loss"])
          _add(record, f"{name}_accuracy", result["accuracy"])
        record["step_time_s"] = train_time / max(epoch_steps_timed, 1)
        record["images_per_s"] = epoch_steps_timed * batch_size * num_models / train_time
        if vmapped:
          record["models"] = labels
        images_per_s.append(record["images_per_s"])
        history.append(record)
        if is_main:
          with metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        shown = [f"epoch {epoch + 1:>3}/{config.num_epochs}",
                 f"train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.4f}"]
        shown += [f"{n} loss {record[n + '_loss']:.4f} acc {record[n + '_accuracy']:.4f}"
                  for n in ("val", "test") if n + "_loss" in record]
        shown.append(f"{record['images_per_s']:,.0f} img/s")
        log("  ".join(shown))
        if vmapped and swept and source.eval_splits:
          name = source.eval_splits[-1]
          accuracies = record[f"{name}_accuracy_per_model"]
          log(f"  {name} acc: " + ", ".join(f"{label} {acc:.4f}"
                                            for label, acc in zip(labels, accuracies)))
        epoch_sums = {"loss": 0.0, "accuracy": 0.0, "steps": 0}
        epoch_t0, epoch_steps_timed = time.perf_counter(), 0
      if checkpoint_now:
        save_checkpoint()
      if stop and step < total_steps:
        log(f"Stopped after step {step} (stop_after_steps={config.stop_after_steps}).")
        return {"interrupted": True, "steps": step}
  finally:
    bar.close()
    mngr.wait_until_finished()
    mngr.close()

  last = history[-1] if history else {}
  results = {k: v for k, v in last.items()
             if k.split("_")[0] in ("train", "val", "test") or k == "models"}
  results.update({"steps": step, "epochs": int(config.num_epochs), "num_models": num_models,
                  "compile_time_s": compile_time,
                  "images_per_s": float(np.median(images_per_s)) if images_per_s else None,
                  "wall_time_s": time.perf_counter() - t_start})
  if is_main:
    (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if history:
      _plot(history, workdir, labels if swept else None)
  final = next((n for n in ("test", "val") if f"{n}_accuracy" in results), None)
  if final:
    spread = f" +- {results[final + '_accuracy_std']:.4f}" if vmapped else ""
    log(f"Final {'test' if final == 'test' else 'validation'} accuracy: "
        f"{results[final + '_accuracy']:.4f}{spread} (loss {results[final + '_loss']:.4f}); "
        f"run folder {workdir}")
  return results
