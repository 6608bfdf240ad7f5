"""JAX's persistent compilation cache, on by default for the command line.

A short run (a study cell, a search candidate, ``jaxcnn train`` on digits) spends much of its
time compiling programs it compiled the last time it ran; with the cache, a later process reads
them from disk instead. ``JAXCNN_COMPILATION_CACHE`` names the folder (default
``~/.cache/jaxcnn/xla``); set it to ``0`` or ``off`` to leave the cache off.

References: https://docs.jax.dev/en/latest/persistent_compilation_cache.html
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

ENV = "JAXCNN_COMPILATION_CACHE"


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> Path | None:
  """Turns on the persistent compilation cache in ``directory`` (default: see module docstring).

  Every compiled program is cached (no minimum compile time or size: the small programs of
  short runs are the ones repeated most). Returns the folder, or None when switched off.
  """
  setting = os.environ.get(ENV, "")
  if setting.strip().lower() in ("0", "off", "false", "no"):
    return None
  path = Path(directory or setting or Path.home() / ".cache" / "jaxcnn" / "xla").expanduser()
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError:  # read-only home, say: run without the cache rather than fail
    return None
  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path
