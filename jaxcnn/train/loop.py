"""``fit(config, workdir) -> final metrics``: epochs, evaluation, checkpoints and a run folder.

``fit`` is a composition of small pieces, as in the Flax ImageNet example and big_vision:

* :func:`setup` turns a config into a :class:`Setup`: the data source
  (:mod:`jaxcnn.data.sources`: device-resident uint8 splits, or a stream for imagenette/ImageNet),
  the fitted preprocessing, the model, the optax chain and the
  :class:`~jaxcnn.train.population.Population` that trains ``num_models`` seeds times the values
  of ``config.sweep`` at once;
* :func:`restore_or_init` gives the state, from the latest checkpoint or fresh;
* the step loop is :meth:`Population.steps`; the data order and per-step randomness depend only on
  the seed and the step, so a resumed run reproduces an uninterrupted one;
* :meth:`Population.evaluate` evaluates every model on a split;
* a :class:`~jaxcnn.train.recorder.Recorder` owns ``metrics.jsonl``, the progress bar, printing
  and plots; :func:`~jaxcnn.train.recorder.itstime` says when to log and checkpoint.

Metrics stay on device until a logging point (every ``log_every_steps``, at epoch ends and
checkpoints), where they are fetched and checked for NaN/inf. With several models, metrics hold the
mean, ``_std`` and ``_per_model`` values, and ``models`` names each model
(``"learning_rate=0.1"``, ``"seed=1"``).

The run folder holds ``config.json``, ``preprocessing.npz`` (the fitted transform),
``metrics.jsonl`` (one record per epoch), ``results.json``, ``loss.png``, ``accuracy.png`` and
``checkpoints/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm import tqdm

from jaxcnn.data import sources
from jaxcnn.train import checkpoint as ckpt
from jaxcnn.train.lookahead import Lookahead
from jaxcnn.train.optim import make_optimizer, make_schedule, set_hyperparams
from jaxcnn.train.population import NonFiniteLossError, Population, check_finite
from jaxcnn.train.recorder import Recorder, config_changes, itstime
from jaxcnn.train.state import TrainState

Split = sources.Split
SWEEPABLE = ("learning_rate", "weight_decay")  # config.sweep fields; each replaces optimizer.<name>
__all__ = ["NonFiniteLossError", "Setup", "fit", "restore_or_init", "setup"]


DTYPES = ("float32", "bfloat16", "float16")


def _positive_int(config: Mapping[str, Any], key: str, minimum: int = 1) -> None:
  value = config[key]
  if isinstance(value, bool) or not float(value).is_integer() or value < minimum:
    raise ValueError(f"config.{key}={value!r}: must be an integer >= {minimum}.")


def check_config(config: Mapping[str, Any]) -> None:
  """Raises a ValueError naming the first bad field of ``config``, before any data or compile work.

  Checks the counts and sizes, the rates, the dtype and every name and spec (model and its
  keyword arguments and choices, optimizer, schedule, preprocessing, augmentations); warns on
  stderr about a learning rate of 0 (the weights would not change).
  """
  from jaxcnn.data import augment, preprocessing  # pylint: disable=g-import-not-at-top
  from jaxcnn.models import create_model  # pylint: disable=g-import-not-at-top
  from jaxcnn.train import optim  # pylint: disable=g-import-not-at-top

  for key in ("num_epochs", "batch_size", "eval_batch_size", "num_models"):
    _positive_int(config, key)
  for key in ("steps_per_epoch", "log_every_steps", "checkpoint_every_steps", "stop_after_steps",
              "keep_checkpoints"):
    _positive_int(config, key, minimum=0)
  for key, low, high in (("label_smoothing", 0.0, 1.0), ("ema_decay", 0.0, 1.0)):
    if not low <= float(config[key]) < high:
      raise ValueError(f"config.{key}={config[key]!r}: must be in [{low:g}, {high:g}).")
  look = config.get("lookahead") or {"every": 0}
  every = look["every"]
  if isinstance(every, bool) or not float(every).is_integer() or every < 0:
    raise ValueError(f"config.lookahead.every={every!r}: must be an integer >= 0 (0: off).")
  if every:
    try:
      Lookahead(1, every=int(every), base=float(look["base"]), power=float(look["power"]))
    except ValueError as e:
      raise ValueError(f"config.lookahead: {e}") from None
  if float(config.get("checkpoint_every_minutes", 0.0)) < 0:
    raise ValueError("config.checkpoint_every_minutes must be >= 0.")
  val = float(config["val_size"])
  if val < 0 or (val >= 1 and not val.is_integer()):
    raise ValueError(f"config.val_size={config['val_size']!r}: must be a fraction in [0, 1) or a "
                     f"whole number of examples.")
  if config["dtype"] not in DTYPES:
    raise ValueError(f"config.dtype={config['dtype']!r}: must be one of {', '.join(DTYPES)}.")
  opt = config["optimizer"]
  rates = [opt["learning_rate"], *(config.get("sweep") or {}).get("learning_rate", ())]
  decays = [opt["weight_decay"], *(config.get("sweep") or {}).get("weight_decay", ())]
  for name, values in (("learning_rate", rates), ("weight_decay", decays)):
    if not all(np.isfinite(float(v)) and float(v) >= 0 for v in values):
      raise ValueError(f"config.optimizer.{name} (and sweep.{name}) must be finite and >= 0, "
                       f"got {values}.")
  if any(float(v) == 0 for v in rates) and jax.process_index() == 0:
    print("Warning: learning_rate=0: the weights will not change (only batch-norm statistics do).",
          file=sys.stderr)
  if opt["name"] not in optim.OPTIMIZERS:
    raise ValueError(f"config.optimizer.name={opt['name']!r}: unknown optimizer; known: "
                     f"{', '.join(optim.OPTIMIZERS)}.")
  if config["schedule"]["name"] not in optim.SCHEDULES:
    raise ValueError(f"config.schedule.name={config['schedule']['name']!r}: unknown schedule; "
                     f"known: {', '.join(optim.SCHEDULES)}.")
  if float(config["schedule"]["warmup_epochs"]) >= int(config["num_epochs"]) and \
      config["schedule"]["name"] in ("cosine", "linear"):
    raise ValueError(f"config.schedule.warmup_epochs={config['schedule']['warmup_epochs']} must "
                     f"be shorter than the run (config.num_epochs={config['num_epochs']}).")
  init = config.get("init_from") or {}
  if init.get("weights"):
    if not Path(init["weights"]).expanduser().is_file():
      raise ValueError(f"config.init_from.weights={init['weights']!r}: no such file.")
    from jaxcnn.models.pretrained import SOURCES  # pylint: disable=g-import-not-at-top
    if init["source"] not in SOURCES or init["train"] not in ("all", "head"):
      raise ValueError(f"config.init_from: source must be one of {', '.join(SOURCES)} and train "
                       f"all or head, got source={init['source']!r}, train={init['train']!r}.")
  model = dict(config["model"])
  try:
    created = create_model(model.pop("name"), num_classes=2, **model)
    if hasattr(created, "get_ops"):
      created.get_ops()  # resolves the act, norm and kernel_init specs
    preprocessing.resolve(config["preprocessing"])
    augment.make_augment(tuple(config["augment"]))
  except (KeyError, TypeError, ValueError) as e:
    message = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
    raise ValueError(" ".join(message.split())) from None


def members(config: Mapping[str, Any]) -> list[dict[str, Any]]:
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
  if int(config["num_models"]) < 1:
    raise ValueError(f"num_models must be >= 1, got {config['num_models']}.")
  values = [dict(zip(swept, row)) for row in zip(*swept.values())] or [{}]
  return [{"seed": int(config["seed"]) + s, **v} for v in values
          for s in range(int(config["num_models"]))]


def member_label(member: Mapping[str, Any], num_seeds: int) -> str:
  """``"learning_rate=0.1,seed=1"``: a model's swept values (and its seed if seeds vary)."""
  parts = [f"{k}={v:g}" for k, v in member.items() if k != "seed"]
  if num_seeds > 1 or not parts:
    parts.append(f"seed={member['seed']}")
  return ",".join(parts)


def _carve_validation(data: Mapping[str, Split], config: Mapping[str, Any]) -> dict[str, Split]:
  """Carves ``config.val_size`` out of the training split, stratified, with ``data_seed``."""
  from jaxcnn.data import splits  # pylint: disable=g-import-not-at-top

  if "val" in data or not config["val_size"]:
    return dict(data)
  train = data["train"]
  val = config["val_size"]
  val = int(val) if val >= 1 else val  # a count (config files coerce ints to the float field)
  split = splits.train_val_test_split(len(train["label"]), val=val, test=0,
                                      seed=config["data_seed"], labels=train["label"])
  take = lambda idx: {k: np.asarray(v)[idx] for k, v in train.items()}
  return {**data, "train": take(split.train), "val": take(split.val)}


def load_source(config: Mapping[str, Any], *, data: Mapping[str, Split] | None = None,
                mesh: jax.sharding.Mesh | None = None) -> tuple[Any, int]:
  """The data source of ``config.dataset`` (or of in-memory ``data``) and its number of classes.

  In-memory data sets go to the devices once; the number of classes is the data set's, or more
  if the labels say so (own ``.npz`` data with more classes than its name's default).
  """
  from jaxcnn.data import datasets  # pylint: disable=g-import-not-at-top

  data_dir = config["data_dir"] or None
  declared = 0
  if data is None:
    if data_dir:
      datasets.check_data_dir(config["dataset"], data_dir)
    info = datasets.info(config["dataset"], data_dir=data_dir)
    if not info.in_memory:
      source = sources.Streamed(config["dataset"], data_dir=data_dir,
                                image_size=int(config["image_size"]), seed=int(config["seed"]),
                                eval_batch_size=int(config["eval_batch_size"]), mesh=mesh)
      return source, info.num_classes
    declared = info.num_classes
    data = {split: datasets.load(config["dataset"], split, data_dir=data_dir)
            for split in ("train", "test")}
  num_classes = _check_labels(data, declared)
  source = sources.InMemory(_carve_validation(data, config),
                            eval_batch_size=int(config["eval_batch_size"]), mesh=mesh)
  return source, num_classes


def _check_labels(data: Mapping[str, Split], declared: int) -> int:
  """The number of classes: ``declared`` (the data set's), or more if the labels say so.

  Labels must be integers in ``0..K-1``. More classes than declared is fine (own ``.npz`` data
  under a built-in name), but labels that are negative, or so sparse that most of the ``K``
  classes would never occur (e.g. raw ids like 10000000), are an error: a softmax over them
  would be mostly empty.
  """
  labels = np.concatenate([np.asarray(split["label"]).reshape(-1) for split in data.values()])
  if labels.size == 0:
    raise ValueError("The data has no examples.")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"Labels must be integers 0..K-1, got dtype {labels.dtype}.")
  low, high = int(labels.min()), int(labels.max())
  distinct = np.unique(labels).size
  if low < 0:
    raise ValueError(f"Labels must be integers 0..K-1, got a label of {low}.")
  if high + 1 > declared and high + 1 > 2 * distinct:
    raise ValueError(f"Labels must be 0..K-1: they go up to {high} but only {distinct} distinct "
                     f"values occur, so most of the {high + 1} classes would be empty. Relabel "
                     f"them first, e.g. np.unique(labels, return_inverse=True)[1].")
  return max(declared, high + 1)


@dataclasses.dataclass
class Setup:
  """Everything a run needs besides its state (see :func:`setup`)."""

  config: ml_collections.ConfigDict
  source: Any
  num_classes: int
  transform: Any
  model: Any
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  population: Population
  members: list[dict[str, Any]]
  labels: list[str] | None
  batch_size: int
  steps_per_epoch: int
  total_steps: int
  variables: Any = None  # initial variables of every model (fine-tuning), else drawn per seed

  @property
  def title(self) -> str:
    data_dir = self.config.get("data_dir")
    return (f"{self.config.model.name} on {self.config.dataset}"
            + (f" from {data_dir}" if data_dir else ""))


def setup(config: ml_collections.ConfigDict, *, data: Mapping[str, Split] | None = None,
          devices: Sequence[jax.Device] | None = None) -> Setup:
  """The source, transform, model, optimizer and population of ``config``."""
  from jaxcnn.data import preprocessing  # pylint: disable=g-import-not-at-top
  from jaxcnn.models import create_model  # pylint: disable=g-import-not-at-top

  runs = members(config)
  mesh = sources.default_mesh(devices)
  batch_size = int(config.batch_size)
  if batch_size < 1 or batch_size % mesh.size:
    raise ValueError(f"batch_size={batch_size} must be a positive multiple of the number of "
                     f"devices ({mesh.size}).")
  source, num_classes = load_source(config, data=data, mesh=mesh)
  streamed = source.kind == "streamed"
  transform = preprocessing.fit(
      config.preprocessing,
      source.sample(int(config.preprocessing_examples)) if streamed else source.sample())
  transform = jax.tree.map(lambda x: sources.put(x, sources.replicated(mesh)), transform)
  augment = None
  if config.augment:
    from jaxcnn.data.augment import make_augment  # pylint: disable=g-import-not-at-top
    augment = make_augment(tuple(config.augment))
  model_kwargs = {k: v for k, v in config.model.to_dict().items() if k != "name"}
  variables, trainable = None, None
  if config.get("init_from") and config.init_from.weights:
    model, variables, trainable = _pretrained(config, model_kwargs, num_classes,
                                              tuple(source.input_shape))
  else:
    model = create_model(config.model.name, num_classes=num_classes, **model_kwargs)

  full_epoch = source.steps_per_epoch(batch_size)
  steps_per_epoch = int(config.get("steps_per_epoch", 0)) or full_epoch
  if steps_per_epoch > full_epoch and not streamed:
    raise ValueError(f"steps_per_epoch={steps_per_epoch} exceeds one pass over the "
                     f"{source.num_train} training examples ({full_epoch} steps).")
  schedule = make_schedule(config.schedule, learning_rate=1.0, steps_per_epoch=steps_per_epoch,
                           num_epochs=int(config.num_epochs))
  tx = make_optimizer(config.optimizer, config.optimizer.learning_rate, schedule=schedule,
                      trainable=trainable)
  total_steps = int(config.num_epochs) * steps_per_epoch
  look = config.get("lookahead") or {"every": 0}
  lookahead = None
  if look["every"]:
    lookahead = Lookahead(total_steps, every=int(look["every"]), base=float(look["base"]),
                          power=float(look["power"]))
  population = Population(model, tx, num_models=len(runs), label_smoothing=config.label_smoothing,
                          augment=augment, preprocess=transform,
                          compute_dtype=jnp.dtype(config.dtype), ema_decay=config.ema_decay,
                          lookahead=lookahead, shared_batch=streamed, mesh=mesh)
  labels = ([member_label(m, int(config.num_models)) for m in runs] if len(runs) > 1 else None)
  return Setup(config=config, source=source, num_classes=num_classes, transform=transform,
               model=model, tx=tx, schedule=schedule, population=population, members=runs,
               labels=labels, batch_size=batch_size, steps_per_epoch=steps_per_epoch,
               total_steps=total_steps, variables=variables)


def _pretrained(config: ml_collections.ConfigDict, model_kwargs: dict[str, Any],
                num_classes: int, input_shape: tuple[int, ...]) -> tuple[Any, Any, Any]:
  """``(model, variables, trainable)`` for fine-tuning: ``config.init_from.weights`` converted
  (:mod:`jaxcnn.models.pretrained`), a fresh head for ``num_classes``, and the trainable module
  names (None: all) when ``init_from.train == "head"``.

  The weights fix the network's operations, so the model's choice fields (act, norm,
  kernel_init, conv, dtype) are not passed on; its structural fields (depth, width ...) are.
  """
  from jaxcnn.models import pretrained  # pylint: disable=g-import-not-at-top
  from jaxcnn.nn.layers import CHOICES  # pylint: disable=g-import-not-at-top

  init = config.init_from
  structural = {k: v for k, v in model_kwargs.items() if k not in CHOICES and k != "num_classes"}
  model, variables = pretrained.load(config.model.name, init.weights, source=init.source,
                                     **structural)
  model, variables = pretrained.replace_head(model, variables, num_classes,
                                             key=jax.random.PRNGKey(int(config.seed)),
                                             input_shape=(1, *input_shape))
  trainable = pretrained.head_names(model, (1, *input_shape)) if init.train == "head" else None
  return model, variables, trainable


@functools.partial(jax.jit, static_argnums=1)
def _stack(variables: Any, num_models: int) -> Any:
  """``variables`` repeated on a new leading axis of ``num_models``: one compiled program (op by
  op, every distinct leaf shape compiled its own broadcast: 18 for a small ResNet-18)."""
  return jax.tree.map(lambda v: jnp.broadcast_to(v, (num_models, *v.shape)), variables)


def restore_or_init(s: Setup, mngr: Any, *, resume: bool) -> tuple[TrainState, Any, dict, int]:
  """``(state, data_keys, epoch_sums, step)``: from the latest checkpoint, or a fresh start.

  A restored state takes the config's learning rate and weight decay (they live in the optimizer
  state), so a run resumed with a changed rate trains at the new one.
  """
  hyperparams = {k: [m.get(k, s.config.optimizer[k]) for m in s.members] for k in SWEEPABLE}
  stacked = None if s.variables is None else _stack(s.variables, len(s.members))
  state, data_keys = s.population.init([m["seed"] for m in s.members], s.source.input_shape,
                                       hyperparams=hyperparams, variables=stacked)
  sums = {"loss": 0.0, "accuracy": 0.0, "steps": 0}
  if resume and mngr.latest_step() is not None:
    state, loop_state = ckpt.restore_latest(mngr, state)
    sums = {k: np.asarray(v) if k != "steps" else v for k, v in loop_state["epoch_sums"].items()}
    # The config's rates win over the checkpoint's: a resumed run trains what config.json says.
    state = state.replace(opt_state=set_hyperparams(
        state.opt_state, **{k: np.asarray(v, np.float32) for k, v in hyperparams.items()}))
  elif resume and jax.process_index() == 0:
    print(f"No checkpoint in {mngr.directory}: starting from scratch.", file=sys.stderr)
  return state, data_keys, sums, int(jax.device_get(state.step).reshape(-1)[0])


def _initialize_distributed() -> None:
  try:
    jax.distributed.initialize()
  except RuntimeError as e:  # already initialised
    if "already" not in str(e):
      raise


@jax.jit
def _params_finite(state: TrainState) -> jax.Array:
  return jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(state.params)]))


def _check_workdir(workdir: Path) -> None:
  """A ValueError unless ``workdir`` is (or can be made) a writable folder."""
  if workdir.exists() and not workdir.is_dir():
    raise ValueError(f"workdir {str(workdir)!r} is a file, not a folder; choose another --workdir.")
  parent = next((p for p in (workdir, *workdir.parents) if p.exists()), Path("."))
  if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
    raise ValueError(f"workdir {str(workdir)!r} cannot be written: {str(parent)!r} is "
                     f"{'not a folder' if not parent.is_dir() else 'read-only'}.")


@contextlib.contextmanager
def _graceful_stop():
  """Within, the first Ctrl-C (SIGINT) or SIGTERM asks the loop to stop after the current step
  (it saves a checkpoint); a second one interrupts at once. Yields ``stop_requested() -> bool``.

  Signal handlers can only be set from the main thread; elsewhere this changes nothing.
  """
  requested = []
  if threading.current_thread() is not threading.main_thread():
    yield lambda: False
    return

  def handler(signum, frame):
    del frame
    if requested:
      raise KeyboardInterrupt
    requested.append(signum)
    tqdm.write(f"{signal.Signals(signum).name}: stopping after this step and saving a "
               f"checkpoint (Ctrl-C again to stop at once, without saving) ...", file=sys.stderr)

  previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
  try:
    yield lambda: bool(requested)
  finally:
    for sig, old in previous.items():
      signal.signal(sig, old)


def fit(config: Mapping[str, Any], workdir: str | Path, *, resume: bool = False,
        data: Mapping[str, Split] | None = None,
        devices: Sequence[jax.Device] | None = None) -> dict[str, Any]:
  """Trains ``config.model`` on ``config.dataset`` and returns the final metrics.

  Args:
    config: a config like :func:`jaxcnn.train.config.get_config` (a ConfigDict or a dict).
    workdir: the run folder (created if needed).
    resume: continue from the latest intact checkpoint in ``workdir`` (starts fresh if there is
      none). Without it, a ``workdir`` that already holds checkpoints is an error.
    data: in-memory splits ``{"train": {"image", "label"}, "test": ..., "val": ...}`` used
      instead of loading ``config.dataset`` (e.g. from a notebook).
    devices: the devices of the data-parallel mesh (default: all of them).

  Returns:
    ``{train,val,test}_{loss,accuracy}`` of the last epoch (with ``_std`` and ``_per_model`` when
    several models train, and ``models`` naming them), ``steps``, ``epochs``, ``num_models``,
    ``compile_time_s``, ``images_per_s``, ``wall_time_s``; or, if the run stopped early
    (``stop_after_steps``, Ctrl-C or SIGTERM, each after saving a checkpoint),
    ``{"interrupted": True, "steps": ..., "checkpoint": ...}``.

  Raises:
    ValueError: a bad config field (:func:`check_config`), or a bad ``workdir``.
    NonFiniteLossError: the loss became NaN/inf; the message names the step, the newest intact
      checkpoint before it (kept) and how to resume past the divergence.
    jaxcnn.train.checkpoint.CheckpointError: resuming from checkpoints that are all damaged or do
      not fit the config's model.
  """
  t_start = time.perf_counter()
  config = ml_collections.ConfigDict(
      config.to_dict() if isinstance(config, ml_collections.ConfigDict) else dict(config))
  check_config(config)
  if config.distributed:
    _initialize_distributed()
  is_main, workdir = jax.process_index() == 0, Path(workdir)
  say = lambda message: is_main and tqdm.write(message, file=sys.stderr)  # above the bar
  mngr_dir = workdir / "checkpoints"
  _check_workdir(workdir)
  if not resume and mngr_dir.is_dir() and any(mngr_dir.iterdir()):
    raise ValueError(f"{workdir} already holds checkpoints: pass resume=True (--resume) to "
                     f"continue that run, or choose a new workdir.")
  say(f"Loading {'the given data' if data is not None else config.dataset} ...")
  s = setup(config, data=data, devices=devices)
  workdir.mkdir(parents=True, exist_ok=True)
  mngr = ckpt.manager(mngr_dir, max_to_keep=config.keep_checkpoints)
  saved = workdir / "config.json"
  changes = (config_changes(json.loads(saved.read_text()), json.loads(config.to_json()))
             if resume and saved.exists() else [])
  try:
    state, data_keys, sums, step = restore_or_init(s, mngr, resume=resume)  # before any write
  except ckpt.CheckpointError as e:
    if not changes:
      raise
    raise ckpt.CheckpointError(f"Cannot resume {workdir} with this config: it differs from "
                               f"{saved} in: {'; '.join(changes)}. {e}") from e
  if resume and step:
    say(f"Resuming from the checkpoint of step {step} in {mngr_dir}.")
  if is_main:
    if changes:
      print(f"Note: the config differs from the one saved in {saved} in: {'; '.join(changes)}; "
            f"using the new one.", file=sys.stderr)
    saved.write_text(config.to_json(indent=2) + "\n")
    np.savez(workdir / "preprocessing.npz", **jax.device_get(s.transform).to_dict())
  rec = Recorder(workdir, title=f"{s.title}, run {workdir.name}", labels=s.labels,
                 total_steps=s.total_steps, resume_step=step if resume else None,
                 is_main=is_main, progress_bar=config.progress_bar, config=config)
  rec.log(f"{s.title}{' (streamed)' if s.source.kind == 'streamed' else ''}: "
          f"{s.source.num_train} training examples, {s.num_classes} classes, {s.steps_per_epoch} "
          f"steps/epoch, {config.num_epochs} epochs, {len(s.members)} model(s), "
          f"{s.population.mesh.size} {jax.devices()[0].platform} device(s)")
  say("Compiling the train step (the first step waits for it) ...")

  def last_good(before: int) -> str:
    intact = [k for k in ckpt.intact_steps(mngr) if k <= before]
    if not intact:
      return "no checkpoint was saved before it."
    rate = float(config.optimizer.learning_rate)
    return (f"the last good checkpoint is step {intact[-1]} in {mngr_dir}. Resuming from it with "
            f"the same settings repeats the divergence (same data and rates); resume with a "
            f"lower rate, e.g. --resume --config.optimizer.learning_rate={rate / 2:g}, or add "
            f"--config.optimizer.grad_clip_norm=1.0.")

  def save(step: int, sums: dict[str, Any]) -> None:
    nonlocal last_save
    if not bool(_params_finite(state)):
      raise NonFiniteLossError(f"The parameters became NaN/inf by step {step}; not saving "
                               f"them. Stopping: {last_good(step)}")
    ckpt.save(mngr, step, state, {"step": step, "epoch_sums": jax.tree.map(
        lambda v: np.asarray(v).tolist(), sums)})
    last_save = time.monotonic()

  pending, epoch_t0, timed, images_per_s = [], time.perf_counter(), 0, []
  last_save, minutes = time.monotonic(), float(config.get("checkpoint_every_minutes", 0.0))
  try:
    with _graceful_stop() as stop_requested:
      for state, metrics in s.population.steps(state, data_keys, s.source,
                                               batch_size=s.batch_size, start=step,
                                               stop=s.total_steps,
                                               steps_per_epoch=s.steps_per_epoch):
        pending.append(metrics)
        step += 1
        epoch_end = step % s.steps_per_epoch == 0
        signalled = stop_requested()
        stop = signalled or (bool(config.stop_after_steps) and step >= config.stop_after_steps)
        due = itstime(step, config.checkpoint_every_steps, s.total_steps) or (
            minutes > 0 and time.monotonic() - last_save >= 60 * minutes)
        if not (itstime(step, config.log_every_steps, s.total_steps) or epoch_end or due or stop):
          continue
        values = jax.device_get({k: jnp.stack([m[k] for m in pending]) for k in pending[0]})
        try:
          check_finite(values["loss"], step - len(pending), s.labels, s.steps_per_epoch)
        except NonFiniteLossError as e:
          raise NonFiniteLossError(f"{e} Stopping: {last_good(step - len(pending))}") from None
        sums = {"loss": sums["loss"] + values["loss"].sum(0), "steps": sums["steps"] + len(pending),
                "accuracy": sums["accuracy"] + values["accuracy"].sum(0)}
        timed, pending = timed + len(pending), []
        rec.progress(step, values["loss"][-1], values["accuracy"][-1])
        if epoch_end:
          seconds = time.perf_counter() - epoch_t0
          rate = np.asarray(state.opt_state.hyperparams["learning_rate"])
          epoch_values = {"learning_rate": rate * float(s.schedule(step - 1)),
                          "train_loss": sums["loss"] / sums["steps"],
                          "train_accuracy": sums["accuracy"] / sums["steps"]}
          for split in s.source.eval_splits:
            for name, v in s.population.evaluate(state, s.source, split).items():
              epoch_values[f"{split}_{name}"] = v
          images_per_s.append(timed * s.batch_size * len(s.members) / seconds)
          rec.record(step // s.steps_per_epoch, int(config.num_epochs), step, epoch_values,
                     {"step_time_s": seconds / max(timed, 1), "images_per_s": images_per_s[-1]})
          every = int(config.get("layer_stats_every_epochs", 0))
          if every and (step // s.steps_per_epoch) % every == 0:
            rec.layer_stats(step, state.params)
          sums, epoch_t0, timed = {"loss": 0.0, "accuracy": 0.0, "steps": 0}, time.perf_counter(), 0
        if due or (signalled and step < s.total_steps):
          save(step, sums)
        if stop and step < s.total_steps:  # stop_after_steps simulates a kill: no save of its own
          rec.close()
          latest = mngr.latest_step()
          where = (f"the latest checkpoint is {mngr_dir / str(latest)}; continue with --resume "
                   f"--workdir {workdir}" if latest else "no checkpoint was saved")
          say(f"Stopped at step {step} of {s.total_steps} ("
              f"{'interrupted' if signalled else f'stop_after_steps={config.stop_after_steps}'}): "
              f"{where}.")
          return {"interrupted": True, "steps": step,
                  "checkpoint": str(mngr_dir / str(latest)) if latest else None}
  finally:
    rec.close()
    mngr.wait_until_finished()
    mngr.close()
  last = rec.history[-1] if rec.history else {}
  results = {k: v for k, v in last.items()
             if k.split("_")[0] in ("train", "val", "test") or k == "models"}
  results.update({"steps": step, "epochs": int(config.num_epochs), "num_models": len(s.members),
                  "compile_time_s": s.population.compile_time_s,
                  "images_per_s": float(np.median(images_per_s)) if images_per_s else None,
                  "wall_time_s": time.perf_counter() - t_start})
  rec.finish(results)
  return results
