"""The training loop: ``fit(config, workdir) -> final metrics``.

Small data sets (digits, MNIST, CIFAR) go to the devices once, as uint8, replicated. Each epoch a
permutation is drawn on device from ``(data key, epoch)``; each step a jitted gather takes the
batch (sharded over the mesh's ``"data"`` axis), and the train step augments, preprocesses and
trains on it. Metrics stay on device until a logging point (every ``log_every_steps``, at epoch
ends and checkpoints), where they are fetched, checked for NaN/inf, and shown. The data order and
per-step randomness depend only on the seed and the step, so a run resumed from a checkpoint
reproduces an uninterrupted one.

The run folder holds ``config.json``, ``preprocessing.npz`` (the fitted transform),
``metrics.jsonl`` (one record per epoch), ``results.json``, ``loss.png``, ``accuracy.png`` and
``checkpoints/``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh
from tqdm import tqdm

from jaxcnn.train import checkpoint as ckpt
from jaxcnn.train.optim import make_optimizer, make_schedule
from jaxcnn.train.state import TrainState, create_train_state
from jaxcnn.train.steps import batch_sharding, make_eval_step, make_train_step, replicated

Split = dict[str, np.ndarray]


class NonFiniteLossError(FloatingPointError):
  """The loss (or the parameters) became NaN or infinite; the run stopped."""


def load_data(config: Mapping[str, Any]) -> dict[str, Split]:
  """Train, validation and test splits ``{"image", "label"}`` of ``config.dataset``.

  The validation split (``config.val_size``) is carved out of the training split, stratified by
  label, with ``config.data_seed``.
  """
  from jaxcnn.data import datasets  # imported here: tensorflow-datasets is slow to import

  data_dir = config["data_dir"] or None
  train = datasets.load(config["dataset"], "train", data_dir=data_dir)
  test = datasets.load(config["dataset"], "test", data_dir=data_dir)
  return {"train": train, "test": test}


def _carve_validation(data: dict[str, Split], config: Mapping[str, Any]) -> dict[str, Split]:
  from jaxcnn.data import splits

  if "val" in data or not config["val_size"]:
    return data
  train = data["train"]
  split = splits.train_val_test_split(len(train["label"]), val=config["val_size"], test=0,
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


def _plot(history: list[dict[str, Any]], workdir: Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  epochs = [r["epoch"] for r in history]
  for metric in ("loss", "accuracy"):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for split in ("train", "val", "test"):
      key = f"{split}_{metric}"
      if history and key in history[0]:
        ax.plot(epochs, [r[key] for r in history], label=split)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    if metric == "loss":
      ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(workdir / f"{metric}.png", dpi=100)
    plt.close(fig)


def _initialize_distributed() -> None:
  try:
    jax.distributed.initialize()
  except RuntimeError as e:  # already initialised
    if "already" not in str(e):
      raise


def fit(config: Mapping[str, Any], workdir: str | Path, *, resume: bool = False,
        data: Mapping[str, Split] | None = None) -> dict[str, Any]:
  """Trains ``config.model`` on ``config.dataset`` and returns the final metrics.

  Args:
    config: a config like :func:`jaxcnn.train.config.get_config` (an ml_collections ConfigDict or
      a dict with the same fields).
    workdir: the run folder (created if needed).
    resume: continue from the latest checkpoint in ``workdir`` (starts fresh if there is none).
      Without it, a ``workdir`` that already holds checkpoints is an error.
    data: optional in-memory splits ``{"train": {"image", "label"}, "test": ..., "val": ...}``
      used instead of loading ``config.dataset`` (e.g. from a notebook).

  Returns:
    ``test_accuracy``, ``test_loss``, ``val_*``, ``train_*`` of the last epoch (with ``_std`` and
    ``_per_model`` when ``num_models > 1``), ``steps``, ``epochs``, ``compile_time_s``,
    ``images_per_s``, ``wall_time_s``; or, if ``stop_after_steps`` cut the run short,
    ``{"interrupted": True, "steps": ...}``.

  Raises:
    NonFiniteLossError: the loss became NaN/inf; the message names the step and the last good
      checkpoint, which is kept.
    jaxcnn.train.checkpoint.CheckpointError: resuming from an unreadable checkpoint.
  """
  t_start = time.perf_counter()
  config = ml_collections.ConfigDict(dict(config) if not isinstance(config, ml_collections.ConfigDict)
                                     else config.to_dict())
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
  workdir.mkdir(parents=True, exist_ok=True)
  if is_main:
    saved = workdir / "config.json"
    if resume and saved.exists() and json.loads(saved.read_text()) != json.loads(config.to_json()):
      print(f"Note: the config differs from the one saved in {saved}; using the new one.",
            file=sys.stderr)
    saved.write_text(config.to_json(indent=2) + "\n")

  # Data, on the host.
  raw = dict(data) if data is not None else load_data(config)
  splits = {k: _check_split(k, v) for k, v in _carve_validation(raw, config).items()}
  train = splits["train"]
  transform = preprocessing.fit(config.preprocessing, train["image"])
  if is_main:
    np.savez(workdir / "preprocessing.npz", **transform.to_dict())
  augment = None
  if config.augment:
    from jaxcnn.data.augment import make_augment
    augment = make_augment(tuple(config.augment))

  if data is None:
    from jaxcnn.data import datasets
    num_classes = datasets.info(config.dataset, data_dir=config.data_dir or None).num_classes
  else:
    num_classes = int(max(int(s["label"].max()) for s in splits.values() if len(s["label"])) + 1)
  model_kwargs = {k: v for k, v in config.model.to_dict().items() if k != "name"}
  model = create_model(config.model.name, num_classes=num_classes, **model_kwargs)

  num_models = int(config.num_models)
  vmapped = num_models > 1
  batch_size = int(config.batch_size)
  n_train = len(train["label"])
  steps_per_epoch = n_train // batch_size
  if steps_per_epoch == 0:
    raise ValueError(f"batch_size={batch_size} exceeds the {n_train} training examples.")
  total_steps = int(config.num_epochs) * steps_per_epoch
  schedule = make_schedule(config.schedule, learning_rate=config.optimizer.learning_rate,
                           steps_per_epoch=steps_per_epoch, num_epochs=int(config.num_epochs))
  tx = make_optimizer(config.optimizer, schedule)

  # Devices: one mesh axis "data" over every device of every host (one CPU is a mesh of one).
  mesh = Mesh(np.array(jax.devices()), ("data",))
  eval_batch_size = int(config.eval_batch_size)
  for what, size in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
    if size % mesh.size:
      raise ValueError(f"{what}={size} must be divisible by the number of devices ({mesh.size}).")
  rep = replicated(mesh)

  # State: model m has seed config.seed + m; its key gives the init, the step rng and the data key.
  keys = jnp.stack([jax.random.PRNGKey(int(config.seed) + m) for m in range(num_models)])
  model_keys, data_keys = jax.vmap(jax.random.split, out_axes=1)(keys)
  init = lambda k: create_train_state(model, tx, k, train["image"].shape[1:],
                                      ema=config.ema_decay > 0)
  state = jax.vmap(init)(model_keys) if vmapped else init(model_keys[0])
  state = jax.tree.map(lambda x: _put(x, rep), state)
  data_keys = _put(data_keys if vmapped else data_keys[0], rep)
  device_splits = {k: {f: _put(v, rep) for f, v in s.items()} for k, s in splits.items()
                   if len(s["label"])}

  compute_dtype = jnp.dtype(config.dtype)
  train_step = make_train_step(model, tx, label_smoothing=config.label_smoothing, augment=augment,
                               preprocess=transform, compute_dtype=compute_dtype,
                               ema_decay=config.ema_decay, vmap_models=vmapped, mesh=mesh)
  eval_step = make_eval_step(model, preprocess=transform, compute_dtype=compute_dtype,
                             vmap_models=vmapped, mesh=mesh)

  def order_fn(key, epoch):
    return jax.random.permutation(jax.random.fold_in(key, epoch), n_train)

  epoch_order = jax.jit(jax.vmap(order_fn, in_axes=(0, None)) if vmapped else order_fn,
                        out_shardings=rep)

  def take_fn(images, labels, order, index):
    ids = jax.lax.dynamic_slice_in_dim(order, index * batch_size, batch_size)
    return {"image": images[ids], "label": labels[ids]}

  take_batch = jax.jit(jax.vmap(take_fn, in_axes=(None, None, 0, None)) if vmapped else take_fn,
                       out_shardings=batch_sharding(mesh, vmap_models=vmapped))

  @jax.jit
  def params_finite(s: TrainState) -> jax.Array:
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(s.params)]))

  def take_eval(images, labels, index):
    ids = index * eval_batch_size + jnp.arange(eval_batch_size)
    n = labels.shape[0]
    safe = jnp.minimum(ids, n - 1)
    return {"image": images[safe], "label": labels[safe], "mask": (ids < n).astype(jnp.float32)}

  take_eval_batch = jax.jit(take_eval, out_shardings=batch_sharding(mesh))

  def evaluate(s: TrainState, split: dict[str, jax.Array]) -> dict[str, np.ndarray]:
    totals = None
    for index in range(math.ceil(split["label"].shape[0] / eval_batch_size)):
      sums = eval_step(s, take_eval_batch(split["image"], split["label"], index))
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
  t0 = time.perf_counter()
  order = epoch_order(data_keys, step // steps_per_epoch)
  example = take_batch(device_splits["train"]["image"], device_splits["train"]["label"], order,
                       step % steps_per_epoch)
  train_step = train_step.lower(state, example).compile()
  compile_time = time.perf_counter() - t0

  bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True,
             disable=not (config.progress_bar and is_main), file=sys.stderr)
  def log(message: str) -> None:  # printed above the progress bar, on the main process only
    if is_main:
      tqdm.write(message, file=sys.stdout)
  log(f"{config.model.name} on {config.dataset}: {n_train} training examples, "
      f"{steps_per_epoch} steps/epoch, {config.num_epochs} epochs, {num_models} model(s), "
      f"{mesh.size} {jax.devices()[0].platform} device(s); compiled in {compile_time:.1f}s")

  pending: list[dict[str, jax.Array]] = []
  epoch_t0, epoch_steps_timed, images_per_s = time.perf_counter(), 0, []
  try:
    while step < total_steps:
      epoch, position = divmod(step, steps_per_epoch)
      if position == 0 or order is None:
        order = epoch_order(data_keys, epoch)
      batch = take_batch(device_splits["train"]["image"], device_splits["train"]["label"], order,
                         position)
      state, metrics = train_step(state, batch)
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
        which = ""
        if vmapped:
          which = f", model {int(np.argmax(bad[row]))} (seed {config.seed + int(np.argmax(bad[row]))})"
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
        record: dict[str, Any] = {"epoch": epoch + 1, "step": step,
                                  "learning_rate": float(schedule(step - 1))}
        _add(record, "train_loss", epoch_sums["loss"] / epoch_sums["steps"])
        _add(record, "train_accuracy", epoch_sums["accuracy"] / epoch_sums["steps"])
        for name in ("val", "test"):
          if name in device_splits:
            result = evaluate(state, device_splits[name])
            _add(record, f"{name}_loss", result["loss"])
            _add(record, f"{name}_accuracy", result["accuracy"])
        record["step_time_s"] = train_time / max(epoch_steps_timed, 1)
        record["images_per_s"] = epoch_steps_timed * batch_size * num_models / train_time
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
             if k.split("_")[0] in ("train", "val", "test")}
  results.update({"steps": step, "epochs": int(config.num_epochs), "num_models": num_models,
                  "compile_time_s": compile_time,
                  "images_per_s": float(np.median(images_per_s)) if images_per_s else None,
                  "wall_time_s": time.perf_counter() - t_start})
  if is_main:
    (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if history:
      _plot(history, workdir)
  if "test_accuracy" in results:
    spread = f" +- {results['test_accuracy_std']:.4f}" if vmapped else ""
    log(f"Final test accuracy: {results['test_accuracy']:.4f}{spread} "
        f"(loss {results['test_loss']:.4f}); run folder {workdir}")
  return results
