"""``jaxcnn search``: an architecture search from an ml_collections config.

  jaxcnn search --config experiments/configs/search_planted.py            # seconds, synthetic
  jaxcnn search --config experiments/configs/search_nasbench201.py:quick  # trains each cell
  jaxcnn search --config experiments/configs/search_planted.py --config.strategy=reinforce
  jaxcnn search --config ... --workdir runs/s --resume --config.budget=200  # continue a search

The config names the space (``"nasbench201"``, the 15,625-cell space, or ``"synthetic"``, a
grid of ``num_options``), the strategy (``strategy``, a name of ``search.strategies`` with
``strategy_kwargs[strategy]`` its arguments, or a spec such as ``"evolution(sample_size=3)"``),
the evaluator (``"planted"``, ``"onemax"``, ``"lookup"`` or ``"train"``), ``budget``,
``batch_size``, ``seed`` and ``top_k``. The run folder (``--workdir``, default
``runs/<time>-search-<config>``) gets ``config.json``, ``history.jsonl`` and
``search_state.npz`` (from :func:`jaxcnn.search.run`; the history holds an evaluator's metrics
beside each reward, e.g. the loss and seconds of a trained candidate), ``best.json`` (the top-k
distinct architectures) and the figures ``reward.png`` and, for the cell space,
``best_cell.png``. ``--resume`` continues the search saved in ``--workdir``; only ``budget`` may
differ from the saved config.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

from absl import flags
from ml_collections import config_flags

from jaxcnn.train.cli import config_error

SPACES = ("nasbench201", "synthetic")
EVALUATORS = ("planted", "onemax", "lookup", "train")
CONFIG_FILE = "config.json"
BEST_FILE = "best.json"
RESUMABLE = ("budget",)  # config fields a resumed search may change


class SearchConfigError(ValueError):
  """A config that cannot describe a search (the message is one line for the user)."""


def _flags(argv: list[str]) -> flags.FlagValues:
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file(
      "config", None, "Search config (a .py with get_config()); override fields with "
      "--config.key=value.", flag_values=fv, lock_config=True,
      sys_argv=["jaxcnn search", *argv])
  flags.DEFINE_string("workdir", None, "Run folder (default: a fresh "
                      "runs/<time>-search-<config>).", flag_values=fv)
  flags.DEFINE_bool("resume", False, "Continue the search saved in --workdir.", flag_values=fv)
  return fv


def load_config(spec: str) -> Any:
  """The ConfigDict of a config file, ``"path.py"`` or ``"path.py:arg"`` (``get_config(arg)``),
  as ``--config`` loads it (unlocked)."""
  import importlib.util  # pylint: disable=g-import-not-at-top

  path, _, arg = str(spec).partition(":")
  module_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
  if module_spec is None or not Path(path).is_file():
    raise SearchConfigError(f"cannot load the config file {path!r}: no such file.")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def _config_spec(argv: list[str]) -> str | None:
  for k, a in enumerate(argv):
    if a in ("--config", "-config") and k + 1 < len(argv):
      return argv[k + 1]
    if a.startswith(("--config=", "-config=")):
      return a.split("=", 1)[1]
  return None


def _comments(path: str) -> dict[str, str]:
  """``{field: comment}`` of a config file's ``c.field = ...  # comment`` lines and of the
  ``"key": value,  # comment`` lines inside a ``c.block = ConfigDict({`` block."""
  out, block = {}, ""
  for line in Path(path).read_text().splitlines():
    top = re.match(r"\s*c\.(\w+)\s*=", line)
    if top:
      block = top.group(1) + "." if "ConfigDict(" in line else ""
    match = re.match(r'\s*(?:c\.([\w.]+)\s*=|"(\w+)":).*?#\s*(.+)$', line)
    if match:
      out[match.group(1) or f"{block}{match.group(2)}"] = match.group(3).strip()
  return out


def config_fields(config: Any, comments: dict[str, str] | None = None, prefix: str = "") -> str:
  """``--config.<field>=<value>`` lines of a config's fields (for ``--help``)."""
  comments = comments or {}
  lines = ["config fields (each a --config.<field>=<value> override):"] if not prefix else []
  for key, value in config.items():
    if hasattr(value, "items") and value:
      lines.append(config_fields(value, comments, f"{prefix}{key}."))
    else:
      shown = "{}" if hasattr(value, "items") else repr(value)
      flag = f"  --config.{prefix}{key}={shown}"
      comment = comments.get(f"{prefix}{key}")
      lines.append(f"{flag:<56} {comment}" if comment else flag)
  return "\n".join(lines)


def make_space(config: Any):
  """The :class:`~jaxcnn.search.Space` a config names."""
  from jaxcnn.search import nasbench201  # pylint: disable=g-import-not-at-top
  from jaxcnn.search.space import Space  # pylint: disable=g-import-not-at-top

  if config.space == "nasbench201":
    return nasbench201.SPACE
  if config.space == "synthetic":
    num_options = tuple(config.get("num_options") or ())
    if not num_options or any(not isinstance(n, int) or n < 1 for n in num_options):
      raise SearchConfigError(f"space 'synthetic' needs num_options, a tuple of option counts "
                              f">= 1, got {num_options!r}.")
    return Space({f"c{j}": tuple(range(n)) for j, n in enumerate(num_options)})
  raise SearchConfigError(f"unknown space {config.space!r}; known spaces: {', '.join(SPACES)}.")


def make_strategy(config: Any):
  """``search.strategies.get(config.strategy, **config.strategy_kwargs[name])``; arguments
  in the spec itself (``"evolution(population_size=50)"``) take precedence."""
  from jaxcnn.search import strategies  # pylint: disable=g-import-not-at-top
  from jaxcnn.registry import parse_spec  # pylint: disable=g-import-not-at-top

  try:
    name, _, spec_kwargs = parse_spec(config.strategy)
  except (ValueError, AttributeError) as e:
    raise SearchConfigError(f"bad strategy {config.strategy!r}: {e}") from None
  all_kwargs = config.get("strategy_kwargs") or {}
  # Arguments written in the spec ("evolution(population_size=50)") win over strategy_kwargs.
  kwargs = {k: v for k, v in dict(all_kwargs.get(name) or {}).items() if k not in spec_kwargs}
  try:
    return strategies.get(config.strategy, **kwargs)
  except (ValueError, TypeError) as e:
    raise SearchConfigError(str(e)) from None


def make_evaluator(config: Any, space: Any) -> tuple[Callable[[Any], Any], dict[str, Any]]:
  """``(evaluate, extra)``: the evaluator a config names, and facts for ``best.json`` (the
  planted optimum, say)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jaxcnn.search import benchmarks, evaluators  # pylint: disable=g-import-not-at-top

  name = config.evaluator
  if name == "planted":
    table, optimum = benchmarks.planted(space, seed=config.get("planted_seed", 0))
    table = np.asarray(table)
    optimum = np.asarray(optimum)
    return evaluators.Lookup(table), {"optimum": _arch_record(space, optimum,
                                                              float(table[tuple(optimum)]))}
  if name == "onemax":
    optimum = np.zeros(len(space), np.int32)
    return benchmarks.onemax(space), {"optimum": _arch_record(space, optimum, 1.0)}
  if name == "lookup":
    return _lookup(config, space), {}
  if name == "train":
    return _trained(config, space), {}
  raise SearchConfigError(f"unknown evaluator {name!r}; known evaluators: "
                          f"{', '.join(EVALUATORS)}.")


def _lookup(config: Any, space: Any):
  """``config.lookup.path``: a ``.npy`` table of shape ``num_options`` or a ``.json`` mapping
  (cell strings for the cell space, else comma-joined option indices) -> reward or metrics."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jaxcnn.search import evaluators, nasbench201  # pylint: disable=g-import-not-at-top

  lookup = config.get("lookup") or {}
  path = Path(str(lookup.get("path") or "")).expanduser()
  if not str(lookup.get("path") or ""):
    raise SearchConfigError("evaluator 'lookup' needs --config.lookup.path (a .npy table or a "
                            ".json mapping).")
  if not path.is_file():
    raise SearchConfigError(f"lookup table {str(path)!r} does not exist.")
  if path.suffix == ".npy":
    table = np.load(path)
    shape = tuple(int(n) for n in space.num_options)
    if table.shape != shape:
      raise SearchConfigError(f"lookup table {str(path)!r} has shape {table.shape}, the space "
                              f"needs {shape}.")
    return evaluators.Lookup(table)
  if path.suffix == ".json":
    table = json.loads(path.read_text())
    if config.space == "nasbench201":
      key = lambda a: nasbench201.to_string(nasbench201.arch_ops(a))
    else:
      key = lambda a: ",".join(str(int(i)) for i in a)
    return evaluators.Lookup(table, key=key, reward_key=lookup.get("reward_key", "accuracy"))
  raise SearchConfigError(f"lookup table {str(path)!r} must be a .npy or .json file.")


def _trained(config: Any, space: Any):
  """:class:`~jaxcnn.search.evaluators.Trained` on a digits subset (cell space only)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from jaxcnn.data import sources  # pylint: disable=g-import-not-at-top
  from jaxcnn.search import evaluators, nasbench201  # pylint: disable=g-import-not-at-top

  if config.space != "nasbench201":
    raise SearchConfigError("evaluator 'train' builds NAS-Bench-201 cells: it needs space "
                            f"'nasbench201', got {config.space!r}.")
  t = config.train
  data = sources.subsets(t.dataset, {"train": t.num_train, "val": t.num_val}, seed=t.data_seed)
  source = sources.InMemory(data, eval_batch_size=min(t.num_val, 500))
  num_classes = int(max(int(data["train"]["label"].max()), int(data["val"]["label"].max())) + 1)

  def build(arch):
    return nasbench201.build(arch, num_cells=t.num_cells, channels=t.channels,
                             num_classes=num_classes)

  tx = optax.sgd(t.learning_rate, momentum=t.momentum or None)
  return evaluators.Trained(build, source, tx, num_steps=t.num_steps, batch_size=t.batch_size,
                            seeds=tuple(t.seeds), split="val",
                            preprocess=lambda x: x.astype(jnp.float32) / 255.0)


def _arch_record(space: Any, arch: Any, reward: float) -> dict[str, Any]:
  record = {"arch": space.decode(arch), "indices": [int(i) for i in arch], "reward": reward}
  return json.loads(json.dumps(record, default=repr))


def _with_cells(config: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
  if config.space != "nasbench201":
    return records
  from jaxcnn.search import nasbench201  # pylint: disable=g-import-not-at-top
  return [dict(r, cell=nasbench201.to_string(nasbench201.arch_ops(r["indices"])))
          for r in records]


def top_distinct(history: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
  """The ``k`` best distinct architectures of a search history, best first, each with its
  ``rank`` and ``times_evaluated``; ties keep the earlier evaluation."""
  order = sorted(range(len(history)), key=lambda i: (-history[i]["reward"], i))
  counts: dict[tuple[int, ...], int] = {}
  for h in history:
    counts[tuple(h["indices"])] = counts.get(tuple(h["indices"]), 0) + 1
  out, seen = [], set()
  for i in order:
    key = tuple(history[i]["indices"])
    if key not in seen:
      seen.add(key)
      out.append(dict(history[i], rank=len(out), times_evaluated=counts[key]))
      if len(out) == k:
        break
  return out


def check_config(config: Any) -> None:
  """Raises :class:`SearchConfigError` for a budget, batch size or top-k out of range."""
  for field in ("space", "strategy", "evaluator", "budget", "batch_size", "seed"):
    if field not in config:
      raise SearchConfigError(f"the config has no field {field!r}; a search config needs "
                              "space, strategy, evaluator, budget, batch_size and seed.")
  for field in ("budget", "batch_size", "top_k"):
    value = config.get(field, 1)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise SearchConfigError(f"{field} must be an integer >= 1, got {value!r}.")


def _check_resume(workdir: Path, config: Any, resume: bool) -> int:
  """Checks ``workdir`` against ``--resume``; returns the evaluations already done there."""
  from jaxcnn.search.run import STATE_FILE  # pylint: disable=g-import-not-at-top

  has_state = (workdir / STATE_FILE).exists()
  if has_state and not resume:
    raise SearchConfigError(f"{workdir} already holds a search ({STATE_FILE}); pass --resume to "
                            "continue it, or choose another --workdir.")
  if not resume:
    return 0
  if not has_state:
    raise SearchConfigError(f"--resume: {workdir} holds no saved search ({STATE_FILE}).")
  import numpy as np  # pylint: disable=g-import-not-at-top
  try:
    with np.load(workdir / STATE_FILE, allow_pickle=False) as f:
      done = int(f["num_evaluated"])
  except Exception as e:  # a damaged file: the zip, format or key error, in one line
    raise SearchConfigError(f"--resume: cannot read {workdir / STATE_FILE}: "
                            f"{type(e).__name__}: {e}") from None
  if done > config.budget:
    raise SearchConfigError(f"--resume: {workdir} holds {done} evaluations, more than "
                            f"budget={config.budget}; resume with a budget >= {done}.")
  saved_path = workdir / CONFIG_FILE
  if saved_path.exists():
    saved = json.loads(saved_path.read_text())
    now = json.loads(config.to_json())
    changed = sorted(k for k in set(saved) | set(now)
                     if k not in RESUMABLE and saved.get(k) != now.get(k))
    if changed:
      raise SearchConfigError(f"--resume: the config differs from the saved {saved_path} in "
                              f"{', '.join(changed)}; a resumed search may change only "
                              f"{', '.join(RESUMABLE)}.")
  return done


def search(config: Any, workdir: str | Path, *, resume: bool = False,
           progress: bool = True) -> dict[str, Any]:
  """Runs the search a config describes in ``workdir``; returns what ``best.json`` holds.

  Raises:
    SearchConfigError: for a config that names an unknown space, strategy or evaluator, a
      budget < 1, a ``workdir`` that holds a search without ``resume``, and the like.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from jaxcnn.search import plots  # pylint: disable=g-import-not-at-top
  from jaxcnn.search.run import run as run_search  # pylint: disable=g-import-not-at-top

  check_config(config)
  space = make_space(config)
  strategy = make_strategy(config)
  workdir = Path(workdir)
  _check_resume(workdir, config, resume)
  evaluate, extra = make_evaluator(config, space)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / CONFIG_FILE).write_text(config.to_json(indent=2) + "\n")
  result = run_search(space, strategy, evaluate, config.budget,
                      jax.random.PRNGKey(config.seed), workdir=workdir,
                      batch_size=config.batch_size, top_k=config.get("top_k", 5),
                      progress=progress)
  best = {"space": config.space, "strategy": repr(strategy), "evaluator": config.evaluator,
          "num_evaluated": len(result.history),
          "best": _with_cells(config, top_distinct(result.history, config.get("top_k", 5)))}
  best.update({k: _with_cells(config, [v])[0] for k, v in extra.items()})
  (workdir / BEST_FILE).write_text(json.dumps(best, indent=2) + "\n")
  reward_label = "validation accuracy" if config.evaluator == "train" else "reward"
  plots.plot_rewards(result.rewards, str(workdir / "reward.png"), reward_label=reward_label,
                     title=f"{config.evaluator} evaluator, {config.strategy} search")
  if config.space == "nasbench201":
    top = best["best"][0]
    plots.plot_cell(top["indices"], str(workdir / "best_cell.png"),
                    title=f"best cell (reward {top['reward']:.4g})\n{top['cell']}")
  return best


def main(argv: list[str]) -> int:
  """Entry point of ``jaxcnn search``; returns the exit status."""
  if any(a in ("-h", "--help", "--helpfull") for a in argv):
    print(__doc__)
    print("flags:\n  --config: search config file (required), fields overridden with "
          "--config.key=value\n  --workdir: run folder\n  --resume: continue the search in "
          "--workdir\n")
    spec = _config_spec(argv)
    if spec:
      try:
        print(config_fields(load_config(spec), _comments(spec.partition(":")[0])))
      except Exception as e:  # pylint: disable=broad-except
        print(f"(cannot list the fields of {spec}: {type(e).__name__}: {e})")
    return 0
  try:
    fv = _flags(argv)
    fv(["jaxcnn search", *argv])
    config = fv.config
    if config is not None:
      config.keys()  # a config file that failed to load raises its OSError here
  except (flags.Error, OSError, AttributeError, KeyError, TypeError, ValueError,
          SyntaxError) as e:
    print(f"jaxcnn search: {config_error(e, argv)}", file=sys.stderr)
    return 2
  if config is None:
    print("jaxcnn search: --config is required, e.g. --config "
          "experiments/configs/search_planted.py.", file=sys.stderr)
    return 2
  if fv.resume and not fv.workdir:
    print("jaxcnn search: --resume needs --workdir (the run folder to continue).",
          file=sys.stderr)
    return 2
  workdir = fv.workdir
  if workdir is None:
    stem = Path(config_flags.get_config_filename(fv["config"]).split(":")[0]).stem
    workdir = Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-search-{stem}"
  try:
    best = search(config, workdir, resume=fv.resume)
  except SearchConfigError as e:
    print(f"jaxcnn search: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f"\njaxcnn search: interrupted; {workdir} holds the search up to its last batch "
          "(continue with --resume).", file=sys.stderr)
    return 130
  except (ValueError, OSError, KeyError) as e:  # KeyError: an arch missing from a lookup table
    text = e.args[0] if isinstance(e, KeyError) and e.args else e
    print(f"jaxcnn search: {text}", file=sys.stderr)
    return 1
  top = best["best"][0]
  shown = top.get("cell") or json.dumps(top["arch"])
  print(f"best of {best['num_evaluated']}: reward {top['reward']:.6g}  {shown}")
  print(f"wrote {workdir}/{{config.json, history.jsonl, {BEST_FILE}, reward.png"
        + (", best_cell.png" if "cell" in top else "") + "}")
  return 0
