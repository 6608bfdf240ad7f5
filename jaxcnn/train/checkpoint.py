"""Orbax checkpoints of a run: the TrainState plus a small JSON record of the loop's progress.

A checkpoint lives in ``RUN/checkpoints/STEP/`` with two items, ``state`` (the TrainState
pytree, restored with the shardings of a template state) and ``loop`` (JSON).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """A checkpoint is missing, unreadable or does not match the run's state."""


def manager(directory: str | Path, *, max_to_keep: int | None = 3) -> ocp.CheckpointManager:
  """A CheckpointManager for ``directory`` (created if needed), keeping the last ``max_to_keep``."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep or None, create=True)
  return ocp.CheckpointManager(Path(directory).absolute(), options=options)


def save(mngr: ocp.CheckpointManager, step: int, state: Any, loop: dict[str, Any]) -> None:
  """Saves ``state`` and the JSON-able ``loop`` record as checkpoint ``step`` (asynchronously)."""
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                          loop=ocp.args.JsonSave(loop)), force=True)


def restore(mngr: ocp.CheckpointManager, template: Any,
            step: int | None = None) -> tuple[Any, dict[str, Any]]:
  """Restores ``(state, loop)`` of checkpoint ``step`` (default: the latest).

  ``template`` is a state of the same structure (e.g. freshly initialised); the restored arrays
  take its shapes, dtypes and shardings. Raises :class:`CheckpointError` with the path and the
  cause when the checkpoint is missing or cannot be read.
  """
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise CheckpointError(f"No checkpoint in {mngr.directory}.")
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
  try:
    restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                          loop=ocp.args.JsonRestore()))
  except Exception as e:  # orbax raises many types (FileNotFoundError, ValueError, tensorstore)
    raise CheckpointError(
        f"Cannot restore checkpoint {Path(mngr.directory) / str(step)}: it is corrupt or does not "
        f"match this run's model and optimizer ({type(e).__name__}: {str(e)[:300]}). Delete it to "
        f"fall back to an earlier checkpoint, or start a new run.") from e
  return restored.state, restored.loop
