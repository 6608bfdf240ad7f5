"""Shared plumbing for the runnable studies: configs, overrides, run folders, markdown tables.

Every study is a library function ``run(config, workdir) -> dict`` plus a thin script
``experiments/NAME.py`` that calls ``study_main``::

  python experiments/NAME.py [--config experiments/configs/NAME.py] [--config.a.b=value]
                             [--workdir DIR] [--quick]

A notebook runs the same study without argv::

  config = common.load_config("NAME")            # experiments/configs/NAME.py; quick from env
  results = study.run(config, common.new_workdir("NAME", quick=config.quick))

Two environment variables let CI steer notebooks (which take no arguments) and scripts alike:
``JAXCNN_QUICK=1`` turns on ``config.quick`` in ``load_config`` and ``JAXCNN_RUNS`` is the root
folder of ``new_workdir`` (default ``runs``).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import pathlib
import sys
from typing import Any, Callable, Iterable, Sequence

import ml_collections

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "experiments" / "configs"


def quick_from_env() -> bool:
  """True when the environment variable ``JAXCNN_QUICK`` is set to 1/true/yes."""
  return os.environ.get("JAXCNN_QUICK", "").strip().lower() in ("1", "true", "yes")


def load_config(path_or_name: str | os.PathLike[str], *, quick: bool | None = None,
                overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """Loads ``get_config()`` from a config file and applies overrides.

  Args:
    path_or_name: a ``.py`` file, or a bare study name resolved to
      ``experiments/configs/NAME.py`` in this repository (works from any working directory).
    quick: sets ``config.quick`` (the config must define it); None leaves the file's value
      unless ``JAXCNN_QUICK`` is set (``quick_from_env``).
    overrides: ``"a.b=value"`` strings, applied after ``quick`` (see ``apply_overrides``).

  Returns:
    The ConfigDict.
  """
  path = pathlib.Path(path_or_name)
  if path.suffix != ".py":
    path = CONFIG_DIR / f"{path_or_name}.py"
  if not path.is_file():
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))
    raise ValueError(f"Config file {str(path)!r} not found. Known configs: {', '.join(known)}.")
  spec = importlib.util.spec_from_file_location(f"_jaxcnn_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"Config file {str(path)!r} has no get_config().")
  config = module.get_config()
  if quick is None and quick_from_env():
    quick = True
  if quick is not None:
    if "quick" not in config:
      raise ValueError(f"Config {str(path)!r} has no 'quick' field.")
    config.quick = bool(quick)
  return apply_overrides(config, overrides)


def _parse_value(text: str, current: Any) -> Any:
  """Parses an override string into the type of the field it replaces."""
  if isinstance(current, bool):
    lowered = text.strip().lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
      raise ValueError(f"Expected a boolean (true/false), got {text!r}.")
    return lowered in ("true", "1", "yes")
  if isinstance(current, str):
    return text
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text
  if isinstance(current, tuple) and isinstance(value, list):
    return tuple(value)
  if isinstance(current, list) and isinstance(value, tuple):
    return list(value)
  return value


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Sequence[str]) -> ml_collections.ConfigDict:
  """Applies ``"a.b=value"`` overrides in place and returns ``config``.

  The value is parsed to the type of the existing field: strings stay raw (``act=elu(alpha=0.5)``),
  booleans accept true/false/1/0, everything else goes through ``ast.literal_eval`` (numbers,
  tuples, lists, None). Unknown keys and type mismatches raise a ValueError.
  """
  for item in overrides:
    key, sep, text = item.partition("=")
    if not sep or not key:
      raise ValueError(f"Override {item!r} is not of the form 'a.b=value'.")
    parent, parts = config, key.split(".")
    for depth, part in enumerate(parts):
      if not isinstance(parent, ml_collections.ConfigDict) or part not in parent:
        where = ".".join(parts[:depth]) or "config"
        known = ", ".join(sorted(parent.keys())) if isinstance(parent, ml_collections.ConfigDict) else "-"
        raise ValueError(f"Unknown config key {key!r}: {where} has no field {part!r}. "
                         f"Known fields: {known}.")
      if depth < len(parts) - 1:
        parent = parent[part]
    current = parent[parts[-1]]
    if isinstance(current, ml_collections.ConfigDict):
      raise ValueError(f"Config key {key!r} is a section; override its fields instead.")
    try:
      parent[parts[-1]] = _parse_value(text, current)
    except TypeError as e:
      raise ValueError(f"Cannot set config key {key!r} to {text!r}: {e}") from None
  return config


def new_workdir(name: str, *, quick: bool = False) -> str:
  """Creates and returns the default run folder ``$JAXCNN_RUNS/NAME`` (``runs/NAME``).

  Quick runs go to ``NAME_quick`` so that a CI-sized run never overwrites a full one.
  """
  root = os.environ.get("JAXCNN_RUNS", "runs")
  path = os.path.join(root, f"{name}_quick" if quick else name)
  os.makedirs(path, exist_ok=True)
  return path


def save_config(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Writes ``config.json`` into ``workdir``; returns its path."""
  path = os.path.join(workdir, "config.json")
  with open(path, "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")
  return path


def _cell(value: Any, floatfmt: str) -> str:
  if isinstance(value, float):
    return format(value, floatfmt)
  if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # NumPy / JAX scalars
    value = value.item()
    return format(value, floatfmt) if isinstance(value, float) else str(value)
  return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Iterable[Sequence[Any]], headers: Sequence[str], *,
                   floatfmt: str = ".4g") -> str:
  """A GitHub markdown table; floats formatted with ``floatfmt``, None as an empty cell."""
  rows = [list(r) for r in rows]
  for r in rows:
    if len(r) != len(headers):
      raise ValueError(f"Row {r!r} has {len(r)} cells but there are {len(headers)} headers.")
  lines = ["| " + " | ".join(str(h).replace("|", "\\|") for h in headers) + " |",
           "|" + "---|" * len(headers)]
  lines += ["| " + " | ".join(_cell(v, floatfmt) for v in r) + " |" for r in rows]
  return "\n".join(lines)


def write_table(path: str, rows: Iterable[Sequence[Any]], headers: Sequence[str], *,
                title: str | None = None, floatfmt: str = ".4g", append: bool = False) -> str:
  """Writes (or appends) a markdown table, under an optional ``## title``; returns its text."""
  text = markdown_table(rows, headers, floatfmt=floatfmt)
  if title:
    text = f"## {title}\n\n{text}"
  with open(path, "a" if append else "w") as f:
    f.write(text + "\n\n")
  return text


def study_main(run_fn: Callable[[ml_collections.ConfigDict, str], dict],
               default_config_path: str | os.PathLike[str],
               argv: Sequence[str] | None = None) -> int:
  """Command-line entry point of a study script; returns the exit code.

  Parses ``--config FILE`` (default ``default_config_path``), any number of
  ``--config.a.b=value`` (or ``--config.a.b value``) overrides, ``--workdir DIR`` (default
  ``new_workdir(<config file stem>, quick=config.quick)``) and ``--quick``; creates the run
  folder, saves ``config.json`` there, calls ``run_fn(config, workdir)`` and lists what it wrote.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  overrides, rest, i = [], [], 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith("--config."):
      if "=" in arg:
        overrides.append(arg[len("--config."):])
      elif i + 1 < len(argv):
        overrides.append(f"{arg[len('--config.'):]}={argv[i + 1]}")
        i += 1
      else:
        print(f"error: {arg} needs a value", flush=True)
        return 2
    else:
      rest.append(arg)
    i += 1
  parser = argparse.ArgumentParser(
      description=f"Runs {run_fn.__module__}.{run_fn.__name__}(config, workdir).",
      epilog="Override any config field with --config.FIELD=VALUE (e.g. --config.quick=true).")
  parser.add_argument("--config", default=str(default_config_path), help="ml_collections config file")
  parser.add_argument("--workdir", default=None, help="run folder (default runs/NAME)")
  parser.add_argument("--quick", action="store_true", help="CI-sized run (sets config.quick)")
  args = parser.parse_args(rest)
  config = load_config(args.config, quick=True if args.quick else None, overrides=overrides)
  name = pathlib.Path(args.config).stem
  workdir = args.workdir or new_workdir(name, quick=bool(config.get("quick", False)))
  os.makedirs(workdir, exist_ok=True)
  save_config(config, workdir)
  run_fn(config, workdir)
  files = sorted(p.name for p in pathlib.Path(workdir).iterdir() if p.is_file())
  print(f"Wrote {workdir}: {', '.join(files)}", flush=True)
  return 0
