"""Orbax checkpoints of a run: the TrainState plus a small JSON record of the loop's progress.

A checkpoint lives in ``RUN/checkpoints/STEP/`` with two items, ``state`` (the TrainState
pytree, restored with the shardings of a template state) and ``loop`` (JSON). Beside it,
``RUN/checkpoints/STEP.sha256.json`` holds the SHA-256 of every file of the checkpoint, written
once the save has finished and verified on restore: orbax's atomic rename protects a checkpoint
against a kill during its write, the checksums against bytes damaged later (disk, copy, a hand).
:func:`restore_latest` falls back to the newest intact checkpoint and says so.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

_SUFFIX = ".sha256.json"


class CheckpointError(RuntimeError):
  """A checkpoint is missing, unreadable or does not match the run's state."""


def manager(directory: str | Path, *, max_to_keep: int | None = 3) -> ocp.CheckpointManager:
  """A CheckpointManager for ``directory`` (created if needed), keeping the last ``max_to_keep``."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep or None, create=True)
  return ocp.CheckpointManager(Path(directory).absolute(), options=options)


def _files(path: Path) -> dict[str, str]:
  """``{relative path: sha256}`` of every file under ``path``."""
  digests = {}
  for f in sorted(p for p in path.rglob("*") if p.is_file()):
    h = hashlib.sha256()
    with f.open("rb") as fh:
      for chunk in iter(lambda: fh.read(1 << 20), b""):
        h.update(chunk)
    digests[str(f.relative_to(path))] = h.hexdigest()
  return digests


def _checksum_path(mngr: ocp.CheckpointManager, step: int) -> Path:
  return Path(mngr.directory) / f"{step}{_SUFFIX}"


def save(mngr: ocp.CheckpointManager, step: int, state: Any, loop: dict[str, Any]) -> None:
  """Saves ``state`` and the JSON-able ``loop`` record as checkpoint ``step``, with checksums.

  Waits for the write to finish (the checksums are of the final files); checksum files of
  checkpoints that the manager has since deleted (``max_to_keep``) are removed.
  """
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                          loop=ocp.args.JsonSave(loop)), force=True)
  mngr.wait_until_finished()
  if jax.process_index() != 0:
    return
  directory = Path(mngr.directory)
  path = _checksum_path(mngr, step)
  tmp = path.with_suffix(".tmp")
  tmp.write_text(json.dumps(_files(directory / str(step)), indent=1))
  tmp.replace(path)
  kept = {str(s) for s in mngr.all_steps()}
  for stale in directory.glob(f"*{_SUFFIX}"):
    if stale.name.removesuffix(_SUFFIX) not in kept:
      stale.unlink(missing_ok=True)


def verify(mngr: ocp.CheckpointManager, step: int) -> str | None:
  """None if checkpoint ``step``'s files match its checksums, else what is wrong (one line).

  A checkpoint without a checksum file (from a run killed between the write and the checksums)
  passes: orbax only makes a checkpoint visible once it is completely written.
  """
  path = _checksum_path(mngr, step)
  if not path.exists():
    return None
  try:
    expected = json.loads(path.read_text())
  except (OSError, ValueError):
    return f"its checksum file {path.name} is unreadable"
  actual = _files(Path(mngr.directory) / str(step))
  missing = sorted(set(expected) - set(actual))
  if missing:
    return f"{len(missing)} file(s) are missing (e.g. {missing[0]})"
  changed = sorted(k for k in expected if actual[k] != expected[k])
  if changed:
    return f"{len(changed)} file(s) do not match their checksums (e.g. {changed[0]})"
  return None


def intact_steps(mngr: ocp.CheckpointManager) -> list[int]:
  """The steps whose checkpoints pass :func:`verify`, oldest first."""
  return [s for s in mngr.all_steps() if verify(mngr, s) is None]


def restore(mngr: ocp.CheckpointManager, template: Any,
            step: int | None = None) -> tuple[Any, dict[str, Any]]:
  """Restores ``(state, loop)`` of checkpoint ``step`` (default: the latest).

  ``template`` is a state of the same structure (e.g. freshly initialised); the restored arrays
  take its shapes, dtypes and shardings. Raises :class:`CheckpointError` with the path and the
  cause when the checkpoint is missing, damaged (checksums) or cannot be read.
  """
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise CheckpointError(f"No checkpoint in {mngr.directory}.")
  where = Path(mngr.directory) / str(step)
  damage = verify(mngr, step)
  if damage:
    raise CheckpointError(f"Checkpoint {where} is damaged: {damage}.")
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
  try:
    restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                          loop=ocp.args.JsonRestore()))
  except Exception as e:  # orbax raises many types (FileNotFoundError, ValueError, tensorstore)
    raise CheckpointError(
        f"Cannot restore checkpoint {where}: it is corrupt or does not match this run's model "
        f"and optimizer ({type(e).__name__}: {str(e)[:300]}). Start a new run (another "
        f"--workdir), or resume with the config that made it.") from e
  return restored.state, restored.loop


def set_aside(mngr: ocp.CheckpointManager, step: int) -> Path:
  """Moves checkpoint ``step`` (and its checksums) to ``<checkpoints>.damaged/``, out of the
  manager's way but not deleted; returns where it went."""
  directory = Path(mngr.directory)
  aside = directory.with_name(directory.name + ".damaged")
  aside.mkdir(exist_ok=True)
  target = aside / str(step)
  suffix = 1
  while target.exists():
    target, suffix = aside / f"{step}.{suffix}", suffix + 1
  (directory / str(step)).rename(target)
  if _checksum_path(mngr, step).exists():
    _checksum_path(mngr, step).rename(target.with_name(target.name + _SUFFIX))
  mngr.reload()
  return target


def restore_latest(mngr: ocp.CheckpointManager, template: Any) -> tuple[Any, dict[str, Any]]:
  """Restores the newest intact checkpoint, reporting (on stderr) each damaged one it skips.

  Raises :class:`CheckpointError` if there is none, every one is damaged, or the newest intact
  one does not fit ``template`` (another model: falling further back would not fit either).
  """
  steps = mngr.all_steps()
  if not steps:
    raise CheckpointError(f"No checkpoint in {mngr.directory}.")
  for step in sorted(steps, reverse=True):
    damage = verify(mngr, step)
    if damage is None:
      return restore(mngr, template, step)
    if jax.process_index() == 0:
      aside = set_aside(mngr, step)
      print(f"Checkpoint step {step} in {mngr.directory} is damaged ({damage}); moved it to "
            f"{aside} and falling back to an earlier one.", file=sys.stderr)
  raise CheckpointError(f"Every checkpoint in {mngr.directory} is damaged (steps {steps}, moved "
                        f"to {Path(str(mngr.directory) + '.damaged')}); start a new run (another "
                        f"--workdir).")
