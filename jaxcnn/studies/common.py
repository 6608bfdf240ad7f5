"""Shared plumbing for the runnable studies: configs, run folders, markdown tables.

Every study is a library function ``run(config, workdir) -> Results`` (a frozen dataclass), a config file
``experiments/configs/NAME.py`` whose ``get_config(arg=None)`` holds its quick setting (parsed with
:func:`jaxcnn.train.config.config_args`) and a thin script ``experiments/NAME.py`` that calls
``study_main``. Scripts load their config through ml_collections' ``config_flags``, as
``jaxcnn train`` does::

  python experiments/NAME.py [--quick] [--config experiments/configs/NAME.py[:quick]]
                             [--config.a.b=value ...] [--workdir DIR]

``--quick`` is ``get_config("quick")``; ``--config.a.b=value`` overrides are applied after it.
A notebook loads the same file by path and sets fields directly::

  config = common.load_config("../experiments/configs/NAME.py", "quick")
  results = study.run(config, common.new_workdir("NAME", quick=config.quick))

``JAXCNN_RUNS`` is the root folder of ``new_workdir`` (default ``runs``).

A study writes its report with :class:`Report` and its numbers with :func:`save_results`::

  report = common.Report("Architectures under one budget")
  report.text("Data: ...").table(rows, headers, title="Results").figure("accuracy_vs_cost.png")
  report.write(os.path.join(workdir, "architectures.md"))
  common.save_results(results, workdir)            # results.json
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import math
import os
import pathlib
import re
import sys
from typing import Any, Callable, Iterable, Sequence

from absl import flags
import ml_collections
import numpy as np
from ml_collections import config_flags

from jaxcnn.train import cli as train_cli

# Where a study resolves a relative ``data_dir`` of its config (``../shared/data``).
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def load_config(path: str | os.PathLike[str], arg: str | None = None) -> ml_collections.ConfigDict:
  """``get_config(arg)`` of a config file, as ``--config PATH:ARG`` loads it (no overrides).

  Args:
    path: a ``.py`` file with ``get_config``, relative to the working directory or absolute.
    arg: its argument, e.g. ``"quick"``; None calls ``get_config()``.

  Returns:
    The ConfigDict (unlocked: set fields directly).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"No config file {path!r} (from {os.getcwd()}).")
  spec = importlib.util.spec_from_file_location(
      f"_jaxcnn_config_{pathlib.Path(path).stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"Config file {path!r} has no get_config().")
  return module.get_config() if arg is None else module.get_config(arg)


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


class Report:
  """A markdown report built piece by piece: ``# title``, then text, tables and figures in order.

  Every method but :meth:`markdown` and :meth:`write` returns the report, so calls chain::

    report = Report("Activation functions")
    report.figure("activation_functions.png")
    report.section("Training the same CNN with each activation").text(caption)
    report.table(rows, headers).text("**Measured.** ...")
    report.write(os.path.join(workdir, "activations.md"))

  Tables are :func:`markdown_table` (``|`` escaped in cells, None as an empty cell, floats with
  ``floatfmt``). Figures are linked by the path given, made relative to the report's folder
  when it is absolute, so a report and its PNGs in one run folder read without Python.

  Args:
    title: the ``# title`` line.
    floatfmt: the default float format of the tables.
  """

  def __init__(self, title: str, *, floatfmt: str = ".4g"):
    self.title = str(title)
    self.floatfmt = floatfmt
    self._blocks: list[tuple[str, Any]] = []
    self.figures: list[str] = []  # the figures' paths, as given, in order

  def section(self, title: str, *, level: int = 2) -> "Report":
    """A heading (``## title`` by default)."""
    if not 2 <= int(level) <= 6:
      raise ValueError(f"A section's level must be 2..6 (1 is the title), got {level}.")
    self._blocks.append(("md", f"{'#' * int(level)} {title}"))
    return self

  def text(self, *paragraphs: str) -> "Report":
    """One markdown paragraph per argument (empty ones are skipped)."""
    self._blocks += [("md", str(p).strip("\n")) for p in paragraphs if str(p).strip()]
    return self

  def table(self, rows: Iterable[Sequence[Any]], headers: Sequence[str], *,
            title: str | None = None, caption: str | None = None,
            floatfmt: str | None = None) -> "Report":
    """A :func:`markdown_table`, under an optional ``## title`` and caption paragraph."""
    if title:
      self.section(title)
    if caption:
      self.text(caption)
    self._blocks.append(("md", markdown_table(rows, headers, floatfmt=floatfmt or self.floatfmt)))
    return self

  def code(self, text: str, language: str = "") -> "Report":
    """A fenced code block."""
    self._blocks.append(("md", f"```{language}\n{str(text).rstrip()}\n```"))
    return self

  def figure(self, path: str | os.PathLike[str], caption: str | None = None, *,
             alt: str | None = None) -> "Report":
    """An image link ``![alt](path)`` (alt: the file's stem), with ``caption`` as a paragraph
    under it."""
    path = os.fspath(path)
    self.figures.append(path)
    self._blocks.append(("figure", (path, alt or pathlib.Path(path).stem)))
    if caption:
      self.text(caption)
    return self

  def markdown(self, folder: str | os.PathLike[str] | None = None) -> str:
    """The report's text; absolute figure paths are made relative to ``folder`` if given."""
    out = [f"# {self.title}"]
    for kind, value in self._blocks:
      if kind == "figure":
        path, alt = value
        if folder is not None and os.path.isabs(path):
          path = os.path.relpath(path, os.fspath(folder))
        value = f"![{alt}]({pathlib.PurePath(path).as_posix()})"
      out.append(value)
    return "\n\n".join(out) + "\n"

  def write(self, path: str | os.PathLike[str]) -> str:
    """Writes the report to ``path`` (its folder created if needed); returns the path."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
      f.write(self.markdown(os.path.dirname(os.path.abspath(path))))
    return path

  def __str__(self) -> str:
    return self.markdown()


def jsonable(value: Any) -> Any:
  """``value`` as JSON-able data: dataclasses as dicts, arrays (NumPy, JAX) and tuples as lists,
  NumPy scalars as Python numbers, non-finite floats as None, paths as strings, dict keys as
  strings."""
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
  if isinstance(value, dict):
    return {str(k): jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple, set, frozenset)):
    return [jsonable(v) for v in value]
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if isinstance(value, (int, np.integer)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    return float(value) if math.isfinite(value) else None
  if isinstance(value, os.PathLike):
    return os.fspath(value)
  if hasattr(value, "__array__") and hasattr(value, "shape"):  # NumPy and JAX arrays
    array = np.asarray(value)
    return jsonable(array.item() if array.ndim == 0 else array.tolist())
  return value


def save_results(results: Any, workdir: str | os.PathLike[str], name: str = "results.json") -> str:
  """Writes ``results`` (a study's Results dataclass) as JSON into ``workdir``; returns the path.

  A ``to_dict()`` method, if the results have one, says what goes in (e.g. leaving out trained
  parameters); otherwise every field does, through :func:`jsonable`.
  """
  data = results.to_dict() if hasattr(results, "to_dict") else results
  path = os.path.join(os.fspath(workdir), name)
  os.makedirs(os.fspath(workdir), exist_ok=True)
  with open(path, "w") as f:
    json.dump(jsonable(data), f, indent=1, allow_nan=False)
    f.write("\n")
  return path


_CONFIG_FLAG = re.compile(r"^--?config(=|$)")


def _config_argv(argv: list[str], default: str, quick: bool) -> list[str]:
  """``argv`` with one leading-form ``--config=PATH[:ARG]`` (``default`` when absent) and, with
  ``quick``, ``quick`` added to its ARG (``get_config("quick")``)."""
  argv = list(argv)
  i = next((k for k, a in enumerate(argv) if _CONFIG_FLAG.match(a)), None)
  if i is None:
    argv.insert(0, f"--config={default}")
    i = 0
  elif "=" not in argv[i] and i + 1 < len(argv):
    argv[i:i + 2] = [f"--config={argv[i + 1]}"]
  if quick and "=" in argv[i]:
    path, sep, arg = argv[i].split("=", 1)[1].partition(":")
    args = [a for a in arg.split(",") if a.strip() and a.split("=")[0].strip() != "quick"]
    args.append("quick")
    argv[i] = f"--config={path}:{','.join(args)}"
  return argv


def study_main(run_fn: Callable[[ml_collections.ConfigDict, str], Any] | str,
               default_config_path: str | os.PathLike[str],
               argv: Sequence[str] | None = None) -> int:
  """Command-line entry point of a study script; returns the exit code.

  Flags: ``--config FILE[:ARG]`` (default ``default_config_path``), ``--config.a.b=value``
  overrides (ml_collections ``config_flags``, as ``jaxcnn train``), ``--quick`` (adds ``quick``
  to ARG, so ``get_config("quick")``; overrides still apply after it) and ``--workdir DIR``
  (default ``new_workdir(<config file stem>, quick=...)``). Creates the run folder, saves
  ``config.json`` there, calls ``run_fn(config, workdir)`` and lists what it wrote. A bad flag,
  an unknown config field or a bad value prints one line and returns 2.

  ``run_fn`` may be the name of a study module (``"jaxcnn.studies.activations"``), whose ``run``
  is imported only once the command line is read: a bad flag then answers in well under a
  second, before JAX is imported (2.7 -> 0.3 CPU-s measured).
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  prog = pathlib.Path(sys.argv[0]).name or "study"
  if any(a in ("-h", "--help", "--helpfull") for a in argv):
    target = (f"{run_fn}.run" if isinstance(run_fn, str) else
              f"{run_fn.__module__}.{run_fn.__name__}")
    print(f"usage: {prog} [--quick] [--config FILE[:ARG]] [--config.FIELD=VALUE ...] "
          f"[--workdir DIR]\n\nRuns {target}(config, workdir) with "
          f"the config of {default_config_path} by default; --quick is get_config('quick').")
    return 0
  rest = argv
  try:
    fv = flags.FlagValues()
    flags.DEFINE_bool("quick", False, "CI-sized run: get_config('quick').", flag_values=fv)
    flags.DEFINE_string("workdir", None, "Run folder (default runs/NAME or runs/NAME_quick).",
                        flag_values=fv)
    rest = _config_argv(fv([prog, *argv], known_only=True)[1:], os.fspath(default_config_path),
                        fv.quick)
    config_fv = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", None, "Config file (a .py with get_config(arg=None)); override its fields with "
        "--config.key=value.", flag_values=config_fv, lock_config=True, sys_argv=[prog, *rest])
    extra = config_fv([prog, *rest])[1:]
    if extra:
      raise ValueError(f"unexpected arguments {' '.join(extra)!r} (flags are --name=value)")
    config = config_fv.config
    config.keys()  # a config file that failed to load raises its OSError here
  except (flags.Error, OSError, AttributeError, KeyError, TypeError, ValueError) as e:
    print(f"{prog}: {train_cli.config_error(e, rest)}", file=sys.stderr, flush=True)
    return 2
  from jaxcnn.train.cache import enable_compilation_cache  # pylint: disable=g-import-not-at-top
  enable_compilation_cache()  # as every jaxcnn command
  if isinstance(run_fn, str):
    run_fn = importlib.import_module(run_fn).run
  name = pathlib.Path(config_flags.get_config_filename(config_fv["config"]).split(":")[0]).stem
  quick = bool(fv.quick or config.get("quick", False))
  workdir = fv.workdir or new_workdir(name, quick=quick)
  os.makedirs(workdir, exist_ok=True)
  save_config(config, workdir)
  run_fn(config, workdir)
  files = sorted(p.name for p in pathlib.Path(workdir).iterdir() if p.is_file())
  print(f"Wrote {workdir}: {', '.join(files)}", flush=True)
  return 0
