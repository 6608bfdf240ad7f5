"""What a run shows and keeps: ``metrics.jsonl``, TensorBoard logs, the progress bar, plots.

:class:`Recorder` is the one place that writes a run folder's records; :func:`itstime` is the one
periodic check (big_vision's ``u.itstime``) for logging, evaluation and checkpoints.
:func:`read_rows` and :func:`append_row` keep the finished units of a long job that resumes by
skipping them (the cells of a tabular benchmark, the models of a study), and
:func:`config_changes` names what differs when a run is resumed with another config. The
TensorBoard logs (``tb/``, :mod:`jaxcnn.train.tensorboard`) mirror what ``metrics.jsonl`` holds,
plus the latest batch's loss at every progress update and, when asked, per-layer statistics.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from flax import traverse_util
from tqdm import tqdm

from jaxcnn.train.tensorboard import TensorBoardLogs


def itstime(step: int, every_steps: int, total_steps: int, *, last: bool = True) -> bool:
  """True at every ``every_steps``-th step (``every_steps`` > 0) and, with ``last``, at the end."""
  return bool((every_steps and step % every_steps == 0) or (last and step == total_steps))


def config_changes(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
  """``"field: old -> new"`` for every dotted field that differs between two configs (as dicts)."""
  old, new = (traverse_util.flatten_dict(dict(c), sep=".") for c in (saved, now))
  unset = object()
  show = lambda value: "(unset)" if value is unset else repr(value)  # noqa: E731
  return [f"{k}: {show(old.get(k, unset))} -> {show(new.get(k, unset))}"
          for k in sorted(old.keys() | new.keys()) if old.get(k, unset) != new.get(k, unset)]


def read_rows(path: str | Path, recipe: Mapping[str, Any], *,
              what: str = "row log") -> list[dict[str, Any]]:
  """The rows of a JSON-lines file written by :func:`append_row`; ``[]`` if there is none yet.

  The file's first line is ``{"recipe": ...}``: a different ``recipe`` (JSON-able) is an error
  that names the fields that differ (:func:`config_changes`). A last line cut short (the process
  was killed while writing it) is dropped from the file, so appending goes on from the last whole
  row; a damaged line before it is an error naming the line. ``what`` names the file in errors.
  """
  path = Path(path)
  if not path.exists():
    return []
  lines = path.read_text().splitlines(keepends=True)
  try:
    header = json.loads(lines[0])["recipe"] if lines else None
  except (json.JSONDecodeError, KeyError, TypeError) as e:
    raise ValueError(f"{path} is not a {what} (its first line should be the recipe): {e}. "
                     "Delete it to start over.") from e
  if header is None:
    path.unlink()
    return []
  changes = config_changes(header, json.loads(json.dumps(recipe)))
  if changes:
    raise ValueError(f"{path} holds rows of another recipe; it differs in: "
                     f"{'; '.join(changes)}. Use the same recipe, or delete the file to start "
                     "over.")
  rows, good = [], lines[:1]
  for number, line in enumerate(lines[1:], 2):
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError:
      if number < len(lines) or line.endswith("\n"):
        raise ValueError(f"{path}, line {number}, is not a row: {line[:80]!r}. Delete the line "
                         "(or the file, to start over).") from None
      path.write_text("".join(good))  # a last row cut short: drop it
      break
    good.append(line)
  return rows


def append_row(path: str | Path, recipe: Mapping[str, Any], row: Mapping[str, Any]) -> None:
  """Appends ``row`` as one JSON line to ``path``, after a ``{"recipe": recipe}`` first line
  when the file is new (:func:`read_rows` reads it back)."""
  path = Path(path)
  if not path.exists():
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"recipe": recipe}) + "\n")
  with path.open("a") as f:
    f.write(json.dumps(row) + "\n")


def summary(values: Any) -> dict[str, Any]:
  """Mean (and, for several models, ``_std`` and ``_per_model``) of a per-model metric."""
  values = np.atleast_1d(np.asarray(values, np.float64))
  if values.size == 1:
    return {"": float(values[0])}
  return {"": float(values.mean()), "_std": float(values.std()),
          "_per_model": [float(v) for v in values]}


class Recorder:
  """Owns a run folder's ``metrics.jsonl``, ``results.json``, plots, progress bar and printing.

  Args:
    workdir: the run folder.
    title: what the run is (e.g. ``"simple_cnn on digits"``): printed and put on the plots.
    labels: one name per model when several train at once (``"learning_rate=0.1"``), else None.
    total_steps: the run's length, for the progress bar.
    resume_step: on resume, the checkpoint's step: records up to it are kept, later ones (written
      after that checkpoint, by the interrupted run) are dropped. None starts a new file.
    is_main: False on every process but the first of a multi-host run (they write nothing).
    progress_bar: show a tqdm bar on stderr.
    config: the run's config, written to the TensorBoard logs as text; its ``tensorboard``
      field (default True) is the default of ``tensorboard``.
    tensorboard: write TensorBoard logs to ``<workdir>/tb`` (one run per model). Without
      tensorboardX installed, a note is printed and no logs are written.
  """

  def __init__(self, workdir: str | Path, *, title: str, labels: Sequence[str] | None,
               total_steps: int, resume_step: int | None = None, is_main: bool = True,
               progress_bar: bool = True, config: Mapping[str, Any] | None = None,
               tensorboard: bool | None = None):
    self.workdir, self.title, self.labels, self.is_main = Path(workdir), title, labels, is_main
    self.path = self.workdir / "metrics.jsonl"
    self.history: list[dict[str, Any]] = []
    if resume_step is not None and self.path.exists():
      records = [json.loads(line) for line in self.path.read_text().splitlines() if line]
      self.history = [r for r in records if r["step"] <= resume_step]
    if is_main:
      self.path.write_text("".join(json.dumps(r) + "\n" for r in self.history))
    self.bar = tqdm(total=total_steps, initial=resume_step or 0, desc="train", unit="step",
                    dynamic_ncols=True, disable=not (progress_bar and is_main), file=sys.stderr)
    if tensorboard is None:
      tensorboard = bool(config.get("tensorboard", True)) if config is not None else True
    self.tb = None
    if tensorboard and is_main:
      try:
        self.tb = TensorBoardLogs(self.workdir / "tb", labels=labels, resume_step=resume_step,
                                  config=config)
      except ImportError as e:
        print(f"Note: no TensorBoard logs: {e}", file=sys.stderr)

  def log(self, message: str) -> None:
    """Prints a line above the progress bar (main process only)."""
    if self.is_main:
      tqdm.write(message, file=sys.stdout)

  def progress(self, step: int, loss: Any, accuracy: Any) -> None:
    """Moves the bar to ``step`` and shows the latest mean loss and accuracy."""
    self.bar.update(step - self.bar.n)
    self.bar.set_postfix(loss=f"{float(np.mean(loss)):.4f}", acc=f"{float(np.mean(accuracy)):.3f}")
    if self.tb:
      self.tb.scalars(step, {"train/batch_loss": loss, "train/batch_accuracy": accuracy})

  def record(self, epoch: int, num_epochs: int, step: int, values: dict[str, Any],
             extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Appends one epoch's record (per-model ``values`` summarised) to metrics.jsonl, prints it."""
    record: dict[str, Any] = {"epoch": epoch, "step": step}
    for name, v in values.items():
      for suffix, s in summary(v).items():
        record[name + suffix] = s
    record.update(extra or {})
    if self.labels:
      record["models"] = list(self.labels)
    self.history.append(record)
    if self.is_main:
      with self.path.open("a") as f:
        f.write(json.dumps(record) + "\n")
    if self.tb:
      self.tb.epoch(epoch, step, values, extra)
    shown = [f"epoch {epoch:>3}/{num_epochs}"]
    shown += [f"{n} loss {record[n + '_loss']:.4f} acc {record[n + '_accuracy']:.4f}"
              for n in ("train", "val", "test") if n + "_loss" in record]
    if "images_per_s" in record:
      shown.append(f"{record['images_per_s']:,.0f} img/s")
    self.log("  ".join(shown))
    split = next((n for n in ("test", "val") if f"{n}_accuracy_per_model" in record), None)
    if self.labels and split:
      self.log(f"  {split} acc: " + ", ".join(
          f"{label} {acc:.4f}" for label, acc in zip(self.labels, record[f"{split}_accuracy_per_model"])))
    return record

  def layer_stats(self, step: int, params: Any = None,
                  stats: Mapping[str, Mapping[str, Any]] | None = None, *,
                  histograms: bool = True) -> None:
    """Per-layer statistics to TensorBoard: weight norms and histograms of ``params`` (the
    models on a leading axis, e.g. ``state.params``) and ``stats`` ``{group: {layer: values}}``
    (e.g. :func:`jaxcnn.train.tensorboard.network_layer_stats`); see
    :meth:`jaxcnn.train.tensorboard.TensorBoardLogs.layer_stats`."""
    if self.tb:
      self.tb.layer_stats(step, params, stats, histograms=histograms)

  def finish(self, results: dict[str, Any]) -> None:
    """Writes results.json and the plots, and prints the final accuracy."""
    self.close()
    if self.is_main:
      (self.workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
      if self.history:
        self.plot()
    final = next((n for n in ("test", "val") if f"{n}_accuracy" in results), None)
    if final:
      spread = (f" +- {results[final + '_accuracy_std']:.4f}"
                if final + "_accuracy_std" in results else "")
      self.log(f"Final {'test' if final == 'test' else 'validation'} accuracy: "
               f"{results[final + '_accuracy']:.4f}{spread} (loss {results[final + '_loss']:.4f}); "
               f"run folder {self.workdir}")

  def close(self) -> None:
    """Closes the progress bar and the TensorBoard writers (flushing them); safe to repeat."""
    self.bar.close()
    if self.tb:
      self.tb.close()
      self.tb = None

  def plot(self) -> None:
    """``loss.png`` and ``accuracy.png``: mean curves, or one curve per model of a sweep."""
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

    epochs = [r["epoch"] for r in self.history]
    for metric in ("loss", "accuracy"):
      fig, ax = plt.subplots(figsize=(5, 3.5))
      for split in ("train", "val", "test"):
        key = f"{split}_{metric}"
        if key not in self.history[0]:
          continue
        if self.labels and key + "_per_model" in self.history[0]:
          for m, label in enumerate(self.labels):
            ax.plot(epochs, [r[key + "_per_model"][m] for r in self.history],
                    label=f"{split} {label}")
        else:
          ax.plot(epochs, [r[key] for r in self.history], label=split)
      ax.set_xlabel("epoch")
      ax.set_ylabel(metric)
      ax.set_title(f"{self.title}: {metric}", fontsize="medium")
      if metric == "loss":
        ax.set_yscale("log")
      ax.grid(alpha=0.3)
      ax.legend(fontsize="small")
      fig.tight_layout()
      fig.savefig(self.workdir / f"{metric}.png", dpi=100)
      plt.close(fig)
