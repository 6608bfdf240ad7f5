"""TensorBoard logs of a run folder, written with tensorboardX (no TensorFlow).

``metrics.jsonl`` stays the record of a run; these logs are a view of it for TensorBoard
(``tensorboard --logdir runs``). A run folder holds ``tb/`` with one TensorBoard run per model:
``tb/`` itself for one model, ``tb/<label>`` (``tb/learning_rate=0.1``) for each model of a
vmapped population, so that TensorBoard overlays them as separate runs. Tags:

* every ``log_every_steps``: ``train/batch_loss``, ``train/batch_accuracy`` (the latest batch);
* every epoch, at the epoch's last step: ``train/loss``, ``val/accuracy``, ... (a record key
  ``<split>_<name>`` becomes ``<split>/<name>``), ``learning_rate``, ``epoch`` and the record's
  other numbers (``step_time_s``, ``images_per_s``);
* when asked (:meth:`TensorBoardLogs.layer_stats`): ``weight_norm/<layer path>`` and histograms
  ``weights/<layer path>`` of every parameter, and any per-layer statistics given, e.g. from
  :func:`network_layer_stats` (``activation_std/<layer>``, ``gradient_norm/<layer>``);
* the config as text (``config``), at step 0 and at the first step of each resumed session;
* each model's hyperparameters (:func:`model_hparams`: a few config fields and the model's own
  swept values) for TensorBoard's HParams tab, which then tabulates every run under ``--logdir``
  against its last ``val/accuracy``, ``train/loss``, ...

On resume, records after the checkpoint's step are purged (tensorboardX ``purge_step``), as they
are from ``metrics.jsonl``; a fresh start removes an earlier ``tb/``, as it rewrites
``metrics.jsonl``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import numpy as np

SPLITS = ("train", "val", "test")
# HParams-tab columns: name -> config field (dotted); a model's label values replace them.
HPARAM_FIELDS = {"dataset": "dataset", "model": "model.name", "act": "model.act",
                 "norm": "model.norm", "kernel_init": "model.kernel_init",
                 "preprocessing": "preprocessing", "augment": "augment",
                 "optimizer": "optimizer.name", "learning_rate": "optimizer.learning_rate",
                 "weight_decay": "optimizer.weight_decay", "schedule": "schedule.name",
                 "batch_size": "batch_size", "num_epochs": "num_epochs", "seed": "seed"}
_file_ids = itertools.count()  # orders the event files of one process written in one second


def run_name(label: str) -> str:
  """A folder name for a model's label: ``"learning_rate=0.1,seed=1"`` is kept as it is; path
  separators and other characters unsafe in file names become ``_``."""
  name = re.sub(r"[^\w=,.+\-]", "_", label).strip(".")
  if not name:
    raise ValueError(f"Model label {label!r} gives no usable folder name.")
  return name


def tag(key: str) -> str:
  """The TensorBoard tag of a ``metrics.jsonl`` key: ``"val_accuracy"`` -> ``"val/accuracy"``."""
  split, sep, name = key.partition("_")
  return f"{split}/{name}" if sep and split in SPLITS and name else key


def per_model(value: Any, num_models: int, name: str = "value") -> np.ndarray:
  """``value`` as ``(num_models,)`` float64: a per-model array, or one number shared by all."""
  v = np.asarray(jax.device_get(value), np.float64).reshape(-1)
  if v.size == 1:
    return np.full(num_models, v[0])
  if v.size != num_models:
    raise ValueError(f"{name} has {v.size} values for {num_models} model(s); expected one per "
                     f"model or a single number.")
  return v


def _path_name(path: Sequence[Any]) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def stacked_leaves(params: Any, num_models: int) -> dict[str, np.ndarray]:
  """``{path: (num_models, size) array}`` of a pytree with the models on a leading axis."""
  leaves = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(params))[0]:
    leaf = np.asarray(leaf)
    if leaf.ndim == 0 or leaf.shape[0] != num_models:
      raise ValueError(f"Parameter {_path_name(path)!r} has shape {leaf.shape}; expected the "
                       f"{num_models} model(s) on a leading axis.")
    leaves[_path_name(path)] = leaf.reshape(num_models, -1)
  return leaves


def weight_norms(params: Any, num_models: int) -> dict[str, np.ndarray]:
  """L2 norm of every parameter array of ``num_models`` stacked models: ``{path: (M,)}``.

  Args:
    params: a pytree whose leaves have the models on a leading axis of size ``num_models``.
    num_models: that size.
  """
  return {name: np.linalg.norm(leaf.astype(np.float64), axis=1)
          for name, leaf in stacked_leaves(params, num_models).items()}


def network_layer_stats(model: Any, variables: Any, x: Any, labels: Any,
                        num_models: int) -> dict[str, dict[str, np.ndarray]]:
  """Per-layer activation stds and kernel-gradient norms of stacked models, for TensorBoard.

  Calls :func:`jaxcnn.diagnostics.network_stats` once per model (one compilation in all).

  Args:
    model: the network (``model.apply(variables, x, train=False)``).
    variables: ``{"params", "batch_stats", ...}`` with ``num_models`` models on a leading axis.
    x: a preprocessed batch shared by all models; labels: its int labels.
    num_models: the size of the leading axis.

  Returns:
    ``{"activation_std": {layer: (M,)}, "gradient_norm": {layer: (M,)}}``.

  References: Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward
  neural networks".
  """
  from jaxcnn import diagnostics  # pylint: disable=g-import-not-at-top

  stats = [diagnostics.network_stats(model, jax.tree.map(lambda a, m=m: a[m], variables), x,
                                     labels) for m in range(num_models)]
  return {"activation_std": {name: np.array([s["act_std"][i] for s in stats])
                             for i, name in enumerate(stats[0]["activation"])},
          "gradient_norm": {name: np.array([s["grad_norm"][i] for s in stats])
                            for i, name in enumerate(stats[0]["weight"])}}


def _field(config: Any, dotted: str) -> Any:
  for name in dotted.split("."):
    if not hasattr(config, "get"):
      return None
    config = config.get(name)
  return config


def _hparam_value(value: Any) -> str | float | bool | None:
  if isinstance(value, (bool, str)) or value is None:
    return value
  if isinstance(value, (int, float, np.number)):
    return float(value)
  return str(tuple(value)) if isinstance(value, (list, tuple)) else str(value)


def model_hparams(config: Any, labels: Sequence[str] | None) -> list[dict[str, Any]]:
  """Each model's hyperparameters for TensorBoard's HParams tab.

  Args:
    config: the run's config (``HPARAM_FIELDS`` are read where present), or None.
    labels: the models' labels, ``"name=value,..."`` (``"learning_rate=0.1,seed=1"``), whose
      values replace the config's; None for one model.

  Returns:
    One ``{name: str | float | bool}`` per model (one for None labels).
  """
  base = {}
  for name, dotted in HPARAM_FIELDS.items():
    value = _hparam_value(_field(config, dotted)) if config is not None else None
    if value is not None:
      base[name] = value
  out = []
  for label in labels or [None]:
    hp = dict(base)
    for part in (label.split(",") if label else []):
      name, sep, text = part.partition("=")
      if sep:
        try:
          hp[name.strip()] = float(text)
        except ValueError:
          hp[name.strip()] = text.strip()
    out.append(hp)
  return out


def config_text(config: Any) -> str:
  """The config as Markdown for TensorBoard's text tab (a JSON code block)."""
  if hasattr(config, "to_json"):
    text = config.to_json(indent=2)
  else:
    text = json.dumps(config, indent=2, default=str, sort_keys=True)
  return "\n".join("    " + line for line in text.splitlines())


class TensorBoardLogs:
  """One tensorboardX writer per model under ``<workdir>/tb``.

  Args:
    logdir: the folder of the logs (``<workdir>/tb``).
    labels: one label per model when several train at once, else None (one run in ``logdir``).
    resume_step: on resume, the checkpoint's step: TensorBoard drops what the interrupted run
      wrote after it. None starts afresh and removes an earlier ``logdir``.
    config: written once as text (``config``), or None.
    hparams: one ``{name: value}`` per model for the HParams tab; None takes them from
      ``config`` and ``labels`` (:func:`model_hparams`); ``[]`` writes none.
    flush_secs: how often the writers' queues reach the disk (each epoch record flushes too).

  Raises:
    ImportError: tensorboardX is not installed (``pip install tensorboardX``).
  """

  def __init__(self, logdir: str | Path, *, labels: Sequence[str] | None,
               resume_step: int | None = None, config: Any = None,
               hparams: Sequence[Mapping[str, Any]] | None = None, flush_secs: int = 30):
    try:  # pylint: disable=g-import-not-at-top
      from tensorboardX import SummaryWriter
      from tensorboardX.summary import hparams as hparams_summary
    except ImportError as e:
      raise ImportError("TensorBoard logs need tensorboardX: pip install tensorboardX "
                        "(or pass tensorboard=False / --config.tensorboard=False).") from e
    self.logdir, self.labels = Path(logdir), list(labels) if labels else None
    names = [run_name(label) for label in self.labels] if self.labels else [""]
    if len(set(names)) != len(names):
      raise ValueError(f"Model labels {self.labels} give repeated run folders {names}.")
    if resume_step is None and self.logdir.is_dir():
      shutil.rmtree(self.logdir)
    self.dirs = [self.logdir / name if name else self.logdir for name in names]
    purge = None if resume_step is None else int(resume_step) + 1
    self.writers = [SummaryWriter(str(d), purge_step=purge, flush_secs=flush_secs,
                                  filename_suffix=f".{os.getpid()}.{next(_file_ids):06d}")
                    for d in self.dirs]
    self.num_models = len(self.writers)
    if config is not None:  # at the first step of this session (earlier ones would be purged)
      self.text("config", config_text(config), 0 if purge is None else purge)
    hparams = model_hparams(config, self.labels) if hparams is None else list(hparams)
    if any(hparams):
      if len(hparams) != self.num_models:
        raise ValueError(f"{len(hparams)} hparams dicts for {self.num_models} model(s).")
      for w, hp in zip(self.writers, hparams):
        # Only the session start: TensorBoard infers the experiment from the runs it finds.
        _, start, _ = hparams_summary({k: _hparam_value(v) for k, v in hp.items()}, {})
        w.file_writer.add_summary(start, 0 if purge is None else purge)

  def text(self, name: str, text: str, step: int) -> None:
    """Writes ``text`` (Markdown) to every model's run, with the model's label above it."""
    for m, w in enumerate(self.writers):
      label = f"model: {self.labels[m]}\n\n" if self.labels else ""
      w.add_text(name, label + text, step)

  def scalars(self, step: int, values: Mapping[str, Any]) -> None:
    """Writes ``{tag: per-model array or number}`` at ``step``; non-numbers are skipped."""
    for name, value in values.items():
      v = np.asarray(jax.device_get(value))
      if v.dtype.kind not in "biuf":  # strings (the model labels), None, nested records
        continue
      for w, x in zip(self.writers, per_model(v, self.num_models, name)):
        w.add_scalar(name, float(x), int(step))

  def epoch(self, epoch: int, step: int, values: Mapping[str, Any],
            extra: Mapping[str, Any] | None = None) -> None:
    """An epoch record: per-model ``values`` (``train_loss``, ...) and shared ``extra`` numbers."""
    self.scalars(step, {"epoch": epoch, **{tag(k): v for k, v in values.items()},
                        **{tag(k): v for k, v in (extra or {}).items()}})
    self.flush()

  def layer_stats(self, step: int, params: Any = None,
                  stats: Mapping[str, Mapping[str, Any]] | None = None, *,
                  histograms: bool = True) -> None:
    """Per-layer statistics at ``step``.

    Args:
      step: the global step.
      params: parameters with the models on a leading axis (``state.params``): writes
        ``weight_norm/<path>`` and, with ``histograms``, ``weights/<path>`` histograms.
      stats: more per-layer values, ``{group: {layer: per-model array or number}}``, e.g. from
        :func:`network_layer_stats`, written as ``<group>/<layer>``.
      histograms: write the weight histograms as well as the norms.
    """
    if params is not None:
      for name, leaf in stacked_leaves(params, self.num_models).items():
        leaf = leaf.astype(np.float64)
        for w, values in zip(self.writers, leaf):
          w.add_scalar(f"weight_norm/{name}", float(np.linalg.norm(values)), int(step))
          if histograms:
            w.add_histogram(f"weights/{name}", values, int(step))
    for group, layers in (stats or {}).items():
      self.scalars(step, {f"{group}/{layer}": v for layer, v in layers.items()})
    self.flush()

  def flush(self) -> None:
    """Writes what the writers hold to disk."""
    for w in self.writers:
      w.flush()

  def close(self) -> None:
    """Flushes and closes the writers; safe to repeat."""
    for w in self.writers:
      w.close()
    self.writers = []
