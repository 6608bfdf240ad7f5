"""``jaxcnn search``: an architecture search from an ml_collections config.

  jaxcnn search --config experiments/configs/search_planted.py            # seconds, synthetic
  jaxcnn search --config experiments/configs/search_nasbench201.py:quick  # trains each cell
  jaxcnn search --config experiments/configs/search_nasnet.py:quick       # NASNet genotypes
  jaxcnn search --config experiments/configs/search_mbconv.py:quick       # MBConv stages
  jaxcnn search --config experiments/configs/search_planted.py --config.strategy=reinforce
  jaxcnn search --config ... --workdir runs/s --resume --config.budget=200  # continue a search
  jaxcnn search --config experiments/configs/search_enas.py:quick         # ENAS, shared weights
  jaxcnn search --config experiments/configs/search_darts.py:quick        # DARTS, gradients

The config names the space (``"nasbench201"``, the 15,625-cell space, ``"nasbench201_small"``,
its 256-cell ``nasbench201.SMALL``, ``"nasnet"``, the NASNet cell genotypes of
:mod:`jaxcnn.search.nasnet`, ``"mbconv"``, MnasNet's MBConv macro space over EfficientNet-B0's
stages, :mod:`jaxcnn.search.mbconv`, or ``"synthetic"``, a grid of ``num_options``), the strategy
(``strategy``, a name of ``search.strategies`` with ``strategy_kwargs[strategy]`` its arguments,
or a spec such as ``"evolution(sample_size=3)"``), the evaluator (``"planted"``, ``"onemax"``,
``"lookup"``, ``"train"`` or ``"shared_training"``), ``budget``, ``batch_size``, ``seed`` and
``top_k``. The run folder (``--workdir``, default ``runs/<time>-search-<config>``) gets
``config.json``, ``history.jsonl`` and ``search_state.npz`` (from :func:`jaxcnn.search.run`; the
history holds an evaluator's metrics beside each reward, e.g. the loss and seconds of a trained
candidate and, for evaluator ``"train"``, its parameters and MACs), ``best.json`` (the top-k
distinct architectures, with the NASNet genotypes or the MBConv stages they decode to) and the
figures ``reward.png`` and,
for the cell spaces, ``best_cell.png``. ``--resume`` continues the search saved in
``--workdir``; only ``budget`` may differ from the saved config.

ENAS (Pham et al. 2018) is strategy ``"enas"`` with evaluator ``"shared_training"``
(:class:`jaxcnn.search.enas.SharedTraining`), run by :func:`jaxcnn.search.enas.search`: the
shared weights are saved beside the controller (``shared_weights_<step>.npz``), so ``--resume``
continues exactly, and ``best.json`` adds :func:`jaxcnn.search.enas.final`'s greedy and best
sampled cells. DARTS (Liu et al. 2019) is strategy ``"darts"`` with the ``darts.*`` and ``data.*``
fields of ``experiments/configs/search_darts.py``, run by :func:`jaxcnn.search.darts.search` in
one go (it keeps no state to resume from): the run folder gets ``config.json``, ``darts.npz``
(alpha and the op weights after every step, the losses), ``best.json`` (the derived cell),
``edge_weights.png`` and ``best_cell.png``.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

from absl import flags
from ml_collections import config_flags

from jaxcnn.train.cli import config_error

SPACES = ("nasbench201", "nasbench201_small", "nasnet", "mbconv", "synthetic")
CELL_SPACES = ("nasbench201", "nasbench201_small")  # NAS-Bench-201 cells: the whole space, SMALL
# The train.* fields that each space's build takes as model overrides (beside num_classes): the
# spaces evaluator "train" can build. The other train.* fields are the data and the SGD budget.
MODEL_FIELDS = {
    "nasbench201": ("num_cells", "channels"),
    "nasbench201_small": ("num_cells", "channels"),
    "nasnet": ("num_cells", "penultimate_filters", "stem_features", "filter_multiplier", "stem",
               "dropout_rate"),
    "mbconv": ("width", "depth", "dropout_rate", "drop_path_rate"),
}
TRAIN_FIELDS = ("dataset", "num_train", "num_val", "data_seed", "num_steps", "batch_size",
                "learning_rate", "momentum", "seeds")
EVALUATORS = ("planted", "onemax", "lookup", "train", "shared_training")
DENSE_PLANTED = 2**22  # the largest space whose planted table is built whole
CONFIG_FILE = "config.json"
BEST_FILE = "best.json"
DARTS_FILE = "darts.npz"  # a DARTS run's alpha and op weights after every step, its losses
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
  from jaxcnn.search import mbconv, nasbench201, nasnet  # pylint: disable=g-import-not-at-top
  from jaxcnn.search.space import Space  # pylint: disable=g-import-not-at-top

  if config.space == "nasbench201":
    return nasbench201.SPACE
  if config.space == "nasbench201_small":
    return nasbench201.SMALL.space
  if config.space == "nasnet":
    return nasnet.SPACE
  if config.space == "mbconv":
    return mbconv.SPACE
  if config.space == "synthetic":
    num_options = tuple(config.get("num_options") or ())
    if not num_options or any(not isinstance(n, int) or n < 1 for n in num_options):
      raise SearchConfigError(f"space 'synthetic' needs num_options, a tuple of option counts "
                              f">= 1, got {num_options!r}.")
    return Space({f"c{j}": tuple(range(n)) for j, n in enumerate(num_options)})
  raise SearchConfigError(f"unknown space {config.space!r}; known spaces: {', '.join(SPACES)}.")


def subspace(config: Any):
  """The :class:`~jaxcnn.search.nasbench201.Subspace` of a cell space (None: all the cells)."""
  from jaxcnn.search import nasbench201  # pylint: disable=g-import-not-at-top
  return nasbench201.SMALL if config.space == "nasbench201_small" else None


def full_arch(config: Any, indices: Any) -> Any:
  """A cell space's architecture (int [len(space)]) as the six NAS-Bench-201 op indices."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  sub = subspace(config)
  indices = np.asarray(indices, np.int32)
  return sub.to_full(indices) if sub is not None else indices


def strategy_name(config: Any) -> str:
  """The registry name of ``config.strategy`` (``"evolution(sample_size=3)"`` -> evolution)."""
  from jaxcnn.registry import parse_spec  # pylint: disable=g-import-not-at-top
  try:
    return parse_spec(config.strategy)[0]
  except (ValueError, AttributeError) as e:
    raise SearchConfigError(f"bad strategy {config.strategy!r}: {e}") from None


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
    seed = config.get("planted_seed", 0)
    if np.prod([float(n) for n in space.num_options]) <= DENSE_PLANTED:
      table, optimum = benchmarks.planted(space, seed=seed)
      table, optimum = np.asarray(table), np.asarray(optimum)
    else:  # NASNet's and MBConv's spaces
      table, optimum = benchmarks.planted_matches(space, seed=seed)
    evaluate = evaluators.Lookup(table)
    return evaluate, {"optimum": _arch_record(space, optimum, float(evaluate([optimum])[0]))}
  if name == "onemax":
    optimum = np.zeros(len(space), np.int32)
    return benchmarks.onemax(space), {"optimum": _arch_record(space, optimum, 1.0)}
  if name == "lookup":
    return _lookup(config, space), {}
  if name == "train":
    return _trained(config, space), {}
  if name == "shared_training":
    return _shared_training(config), {}
  raise SearchConfigError(f"unknown evaluator {name!r}; known evaluators: "
                          f"{', '.join(EVALUATORS)}.")


def _lookup(config: Any, space: Any):
  """``config.lookup.path``: a ``.npy`` table of shape ``num_options`` or a ``.json`` mapping
  (cell strings for the cell spaces, else comma-joined option indices) -> reward or metrics."""
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
    if config.space in CELL_SPACES:
      key = lambda a: nasbench201.to_string(nasbench201.arch_ops(full_arch(config, a)))
    else:
      key = lambda a: ",".join(str(int(i)) for i in a)
    return evaluators.Lookup(table, key=key, reward_key=lookup.get("reward_key", "accuracy"))
  raise SearchConfigError(f"lookup table {str(path)!r} must be a .npy or .json file.")


def _needs_cells(config: Any, evaluator: str) -> None:
  """Raises unless the space is a NAS-Bench-201 cell space (what ``evaluator`` builds)."""
  if config.space not in CELL_SPACES:
    raise SearchConfigError(f"evaluator {evaluator!r} builds NAS-Bench-201 cells: it needs space "
                            f"'nasbench201' or 'nasbench201_small', got {config.space!r}.")


def _digits(data: Any):
  """``(source, num_classes)``: an :class:`~jaxcnn.data.sources.InMemory` of seeded ``train``
  and ``val`` subsets of ``data.dataset``."""
  from jaxcnn.data import sources  # pylint: disable=g-import-not-at-top

  subsets = sources.subsets(data.dataset, {"train": data.num_train, "val": data.num_val},
                            seed=data.data_seed)
  num_classes = int(max(int(s["label"].max()) for s in subsets.values()) + 1)
  return sources.InMemory(subsets, eval_batch_size=min(data.num_val, 500)), num_classes


def model_builder(config: Any, num_classes: int) -> Callable[[Any], Any]:
  """``build(arch) -> flax Module``: the space's own build (``nasbench201.build`` of the full
  cell, ``nasnet.build`` or ``mbconv.build``) with ``config.train``'s model fields of
  :data:`MODEL_FIELDS` as overrides."""
  from jaxcnn.search import mbconv, nasbench201, nasnet  # pylint: disable=g-import-not-at-top

  overrides = {f: config.train[f] for f in MODEL_FIELDS[config.space] if f in config.train}
  overrides["num_classes"] = num_classes
  if config.space in CELL_SPACES:
    return lambda arch: nasbench201.build(full_arch(config, arch), **overrides)
  space_build = {"nasnet": nasnet.build, "mbconv": mbconv.build}[config.space]
  return lambda arch: space_build(arch, **overrides)


def _trained(config: Any, space: Any):
  """:class:`~jaxcnn.search.evaluators.Trained` on a digits subset, each candidate built by
  :func:`model_builder`, with its parameters and MACs (:class:`~jaxcnn.search.costs.Costs`)
  among the metrics."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from jaxcnn.search import costs, evaluators  # pylint: disable=g-import-not-at-top

  t = config.train
  source, num_classes = _digits(t)
  build = model_builder(config, num_classes)
  cost = costs.Costs(build, source.input_shape)
  try:  # a model field that cannot build (penultimate_filters=50, say), before any training
    cost.one(np.zeros(len(space), np.int32))
  except ValueError as e:
    raise SearchConfigError(f"train: {e}") from None
  tx = optax.sgd(t.learning_rate, momentum=t.momentum or None)
  trained = evaluators.Trained(build, source, tx, num_steps=t.num_steps, batch_size=t.batch_size,
                               seeds=tuple(t.seeds), split="val",
                               preprocess=lambda x: x.astype(jnp.float32) / 255.0)
  return _WithCosts(trained, cost)


class _WithCosts:
  """Calls an evaluator; its ``last_metrics`` gain each candidate's ``params`` and ``macs``
  (what :func:`jaxcnn.search.run` records beside the reward)."""

  def __init__(self, evaluator: Any, cost: Any):
    self.evaluator, self.cost = evaluator, cost
    self.last_metrics: dict[str, Any] | None = None

  def __call__(self, archs: Any) -> Any:
    rewards = self.evaluator(archs)
    self.last_metrics = dict(self.evaluator.last_metrics, **self.cost(archs))
    return rewards


@functools.lru_cache(maxsize=8)
def _shared_tx(learning_rate: float, momentum: float):
  """The shared weights' SGD (Nesterov momentum; Pham et al. 2018, Section 3.2), one object per
  setting so that repeated searches in a process reuse the compiled train step."""
  import optax  # pylint: disable=g-import-not-at-top
  return optax.sgd(learning_rate, momentum=momentum or None, nesterov=bool(momentum))


def supernet(config: Any, num_classes: int):
  """The :class:`~jaxcnn.search.supernet.SuperNet` of ``config.shared``."""
  from jaxcnn.search import supernet as sn  # pylint: disable=g-import-not-at-top
  return sn.SuperNet(num_cells=config.shared.num_cells, channels=config.shared.channels,
                     num_classes=num_classes)


def _shared_training(config: Any):
  """:class:`~jaxcnn.search.enas.SharedTraining` on a digits subset (cell spaces only)."""
  from jaxcnn.search import darts, enas  # pylint: disable=g-import-not-at-top

  _needs_cells(config, "shared_training")
  if "shared" not in config or "data" not in config:
    raise SearchConfigError("evaluator 'shared_training' needs the shared.* and data.* fields "
                            "of experiments/configs/search_enas.py.")
  s = config.shared
  source, num_classes = _digits(config.data)
  try:
    return enas.SharedTraining(supernet(config, num_classes),
                               _shared_tx(s.learning_rate, s.momentum), source,
                               train_steps=s.train_steps, batch_size=s.batch_size,
                               subspace=subspace(config), seed=config.seed,
                               preprocess=darts.to_unit, mode=s.mode)
  except ValueError as e:
    raise SearchConfigError(f"shared: {e}") from None


def _arch_record(space: Any, arch: Any, reward: float) -> dict[str, Any]:
  record = {"arch": space.decode(arch), "indices": [int(i) for i in arch], "reward": reward}
  return json.loads(json.dumps(record, default=repr))


def _cell(config: Any, indices: Any) -> str:
  from jaxcnn.search import nasbench201  # pylint: disable=g-import-not-at-top
  return nasbench201.to_string(nasbench201.arch_ops(full_arch(config, indices)))


def _decoded(config: Any, indices: Any) -> dict[str, Any]:
  """What an architecture decodes to, JSON-safe: the cell string of a cell space, the
  ``(normal, reduction)`` genotypes of ``nasnet`` (blocks ``[[op, input], [op, input]]``,
  concat), the stages of ``mbconv`` (:class:`~jaxcnn.models.mbconv.Stage` fields)."""
  from jaxcnn.search import mbconv, nasnet  # pylint: disable=g-import-not-at-top

  if config.space in CELL_SPACES:
    return {"cell": _cell(config, indices)}
  if config.space == "nasnet":
    return {"genotypes": {cell: {"blocks": [[list(pair) for pair in block]
                                            for block in genotype.blocks],
                                 "concat": list(genotype.concat)}
                          for cell, genotype in zip(nasnet.CELLS, nasnet.decode(indices))}}
  if config.space == "mbconv":
    return {"stages": [stage._asdict() for stage in mbconv.decode(indices)]}
  return {}


def _with_cells(config: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """The records with what each architecture decodes to (:func:`_decoded`)."""
  out = [dict(r, **_decoded(config, r["indices"])) for r in records]
  return json.loads(json.dumps(out, default=repr))


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
  """Raises :class:`SearchConfigError` for a missing field, a budget, batch size or top-k out of
  range, or a strategy that cannot run with the config's space or evaluator."""
  darts = "strategy" in config and strategy_name(config) == "darts"
  needed = ("space", "strategy", "seed") if darts else (
      "space", "strategy", "evaluator", "budget", "batch_size", "seed")
  for field in needed:
    if field not in config:
      raise SearchConfigError(f"the config has no field {field!r}; a search config needs "
                              f"{', '.join(needed[:-1])} and {needed[-1]}.")
  if darts:
    if config.space not in CELL_SPACES:
      raise SearchConfigError("strategy 'darts' relaxes the NAS-Bench-201 cells: it needs space "
                              f"'nasbench201' or 'nasbench201_small', got {config.space!r}.")
    if "darts" not in config or "data" not in config:
      raise SearchConfigError("strategy 'darts' is run by darts.search, not by asking and "
                              "telling: it needs the darts.* and data.* fields of "
                              "experiments/configs/search_darts.py.")
    return
  if strategy_name(config) == "enas" and config.evaluator != "shared_training":
    raise SearchConfigError("strategy 'enas' trains its controller in turn with the shared "
                            "weights: it needs evaluator 'shared_training' (see "
                            f"experiments/configs/search_enas.py), got {config.evaluator!r}.")
  if config.evaluator == "train":
    _check_train(config)
  for field in ("budget", "batch_size", "top_k"):
    value = config.get(field, 1)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise SearchConfigError(f"{field} must be an integer >= 1, got {value!r}.")
  if config.evaluator == "shared_training" and "shared" in config:
    # Checked here, before any data is loaded (SharedTraining checks the same, later).
    steps, size = config.shared.get("train_steps", 1), config.shared.get("batch_size", 1)
    if not (isinstance(steps, int) and isinstance(size, int) and steps >= 1 and size >= 1):
      raise SearchConfigError(f"shared: Need train_steps >= 1 and batch_size >= 1, got {steps!r} "
                              f"and {size!r}.")


def _check_train(config: Any) -> None:
  """Raises unless evaluator ``"train"`` can build the space and every ``train.*`` field is one
  of :data:`TRAIN_FIELDS` or the space's :data:`MODEL_FIELDS`."""
  if config.space not in MODEL_FIELDS:
    raise SearchConfigError(f"evaluator 'train' builds each candidate with its space's build: it "
                            f"needs space {', '.join(MODEL_FIELDS)}, got {config.space!r}.")
  if "train" not in config:
    raise SearchConfigError(f"evaluator 'train' needs the train.* fields of "
                            f"experiments/configs/search_{config.space.split('_')[0]}.py.")
  missing = [f for f in TRAIN_FIELDS if f not in config.train]
  if missing:
    raise SearchConfigError(f"evaluator 'train' needs train.{missing[0]}; its train fields are "
                            f"{', '.join(TRAIN_FIELDS)}.")
  fields = MODEL_FIELDS[config.space]
  for field in config.train:
    if field not in TRAIN_FIELDS and field not in fields:
      raise SearchConfigError(f"train.{field} does not fit space {config.space!r}: its model "
                              f"fields are {', '.join(fields)}.")


def _check_resume(workdir: Path, config: Any, resume: bool) -> int:
  """Checks ``workdir`` against ``--resume``; returns the evaluations already done there."""
  from jaxcnn.search.run import STATE_FILE  # pylint: disable=g-import-not-at-top

  has_state = (workdir / STATE_FILE).exists()
  if has_state and not resume:
    raise SearchConfigError(f"{workdir} already holds a search ({STATE_FILE}); pass --resume to "
                            "continue it, or choose another --workdir.")
  if (workdir / DARTS_FILE).exists():
    raise SearchConfigError(f"{workdir} already holds a DARTS search ({DARTS_FILE}); choose "
                            "another --workdir.")
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

  Strategy ``"darts"`` runs :func:`search_darts`; evaluator ``"shared_training"`` runs
  :func:`jaxcnn.search.enas.search` (the shared weights saved beside the strategy's state) and,
  for a REINFORCE controller such as ENAS's, :func:`jaxcnn.search.enas.final` after it; the
  other evaluators run :func:`jaxcnn.search.run`.

  Raises:
    SearchConfigError: for a config that names an unknown space, strategy or evaluator, a
      budget < 1, a ``workdir`` that holds a search without ``resume``, and the like.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from jaxcnn.search import enas, plots, strategies  # pylint: disable=g-import-not-at-top
  from jaxcnn.search.run import run as run_search  # pylint: disable=g-import-not-at-top

  check_config(config)
  if strategy_name(config) == "darts":
    return search_darts(config, workdir, resume=resume, progress=progress)
  space = make_space(config)
  strategy = make_strategy(config)
  workdir = Path(workdir)
  _check_resume(workdir, config, resume)
  evaluate, extra = make_evaluator(config, space)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / CONFIG_FILE).write_text(config.to_json(indent=2) + "\n")
  shared = isinstance(evaluate, enas.SharedTraining)
  top_k = config.get("top_k", 5)
  result = (enas.search if shared else run_search)(
      space, strategy, evaluate, config.budget, jax.random.PRNGKey(config.seed),
      workdir=workdir, batch_size=config.batch_size, top_k=top_k, progress=progress)
  best = {"space": config.space, "strategy": repr(strategy), "evaluator": config.evaluator,
          "num_evaluated": len(result.history),
          "best": _with_cells(config, top_distinct(result.history, top_k))}
  best.update({k: _with_cells(config, [v])[0] for k, v in extra.items()})
  pick = best["best"][0]
  if shared and isinstance(strategy, strategies.Reinforce):
    final = enas.final(strategy, result.state, evaluate, jax.random.PRNGKey(config.seed + 1),
                       num_samples=config.shared.final_samples, top_k=top_k)
    best["final"] = {
        "num_samples": config.shared.final_samples,
        "greedy": _with_cells(config, [_arch_record(space, final.greedy,
                                                    final.greedy_reward)])[0],
        "sampled": _with_cells(config, [_arch_record(space, a, float(r))
                                        for a, r in zip(final.archs, final.rewards)])}
    pick = best["final"]["sampled"][0]
  (workdir / BEST_FILE).write_text(json.dumps(best, indent=2) + "\n")
  reward_label = {"train": "validation accuracy",
                  "shared_training": "shared-weight validation accuracy"}.get(config.evaluator,
                                                                              "reward")
  plots.plot_rewards(result.rewards, str(workdir / "reward.png"), reward_label=reward_label,
                     title=f"{config.evaluator} evaluator, {config.strategy} search")
  if config.space in CELL_SPACES:
    source = "enas.final's pick" if "final" in best else "best cell"
    plots.plot_cell(full_arch(config, pick["indices"]), str(workdir / "best_cell.png"),
                    title=f"{source} (reward {pick['reward']:.4g})\n{pick['cell']}")
  return best


# ----------------------------------------------------------------------------------------------
# DARTS: gradient descent on the relaxed cell, not an ask/tell loop.


@functools.lru_cache(maxsize=8)
def _darts_optimizers(num_steps: int, learning_rate: float, min_learning_rate: float,
                      momentum: float, weight_decay: float, alpha_learning_rate: float,
                      alpha_weight_decay: float):
  """``(w_tx, alpha_tx)`` of :func:`jaxcnn.search.darts.search`, one pair per setting (so
  repeated searches in a process reuse the compiled step)."""
  from jaxcnn.search import darts  # pylint: disable=g-import-not-at-top
  return (darts.weight_optimizer(num_steps, learning_rate, momentum, weight_decay,
                                 min_learning_rate),
          darts.alpha_optimizer(alpha_learning_rate, alpha_weight_decay))


def search_darts(config: Any, workdir: str | Path, *, resume: bool = False,
                 progress: bool = True) -> dict[str, Any]:
  """Runs :func:`jaxcnn.search.darts.search` as ``config.darts`` describes, in ``workdir``;
  returns what ``best.json`` holds.

  DARTS trains alpha and the weights in one run and keeps no state between steps on disk, so
  there is nothing to resume: ``resume`` raises, and so does a ``workdir`` that holds a search.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jaxcnn.search import darts, nasbench201, plots  # pylint: disable=g-import-not-at-top
  from jaxcnn.search.run import STATE_FILE  # pylint: disable=g-import-not-at-top

  strategy = make_strategy(config)  # darts.DARTS: its keep_none is the deriving rule
  workdir = Path(workdir)
  if resume:
    raise SearchConfigError("--resume: a DARTS search runs in one go (darts.search keeps no state "
                            "to continue from); run it again in a fresh --workdir.")
  for name in (STATE_FILE, DARTS_FILE):
    if (workdir / name).exists():
      raise SearchConfigError(f"{workdir} already holds a search ({name}); a DARTS search starts "
                              "afresh: choose another --workdir.")
  d = config.darts
  for field in ("num_steps", "batch_size"):
    value = d.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise SearchConfigError(f"darts.{field} must be an integer >= 1, got {value!r}.")
  if not isinstance(d.xi, (int, float)) or d.xi < 0:
    raise SearchConfigError(f"darts.xi must be >= 0 (0: first order), got {d.xi!r}.")
  source, num_classes = _digits(config.data)
  sub = subspace(config)
  mask = None if sub is None else sub.mask  # SMALL's ops, or every op on every edge
  net = darts.DARTSNet(num_cells=d.num_cells, channels=d.channels, num_classes=num_classes,
                       mask=mask)
  w_tx, alpha_tx = _darts_optimizers(d.num_steps, d.learning_rate, d.min_learning_rate,
                                     d.momentum, d.weight_decay, d.alpha_learning_rate,
                                     d.alpha_weight_decay)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / CONFIG_FILE).write_text(config.to_json(indent=2) + "\n")
  result = darts.search(net, source, num_steps=d.num_steps, batch_size=d.batch_size,
                        key=jax.random.PRNGKey(config.seed), xi=float(d.xi), w_tx=w_tx,
                        alpha_tx=alpha_tx, preprocess=darts.to_unit,
                        keep_none=strategy.keep_none, progress=progress)
  weights = plots.plot_edge_weights(
      result.alpha_history, mask, str(workdir / "edge_weights.png"),
      title=f"DARTS ({'second' if d.xi else 'first'} order), {config.space}")
  np.savez(workdir / DARTS_FILE, alpha_history=result.alpha_history, edge_weights=weights,
           train_loss=result.train_loss, val_loss=result.val_loss)
  arch = np.asarray(result.arch, np.int32)
  indices = darts.to_subspace(arch, sub) if sub is not None else arch
  space = make_space(config)
  cell = nasbench201.to_string(nasbench201.arch_ops(arch))
  allowed = darts.check_mask(mask)
  best = {"space": config.space, "strategy": repr(strategy),
          "order": "second" if d.xi else "first", "xi": float(d.xi), "num_steps": d.num_steps,
          "arch": space.decode(indices), "indices": [int(i) for i in indices], "cell": cell,
          "edge_weights": {name: {op: float(weights[-1, e, o])
                                  for o, op in enumerate(nasbench201.OPS)
                                  if allowed[e, o]}
                           for e, name in enumerate(nasbench201.SPACE.names)},
          "train_loss": float(result.train_loss[-1]), "val_loss": float(result.val_loss[-1])}
  best = json.loads(json.dumps(best, default=repr))
  (workdir / BEST_FILE).write_text(json.dumps(best, indent=2) + "\n")
  plots.plot_cell(arch, str(workdir / "best_cell.png"),
                  title=f"DARTS's derived cell after {d.num_steps} steps\n{cell}")
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
    if strategy_name(config) == "darts":
      print("\njaxcnn search: interrupted; a DARTS search cannot be resumed; run it again "
            "from the start.", file=sys.stderr)
    else:
      print(f"\njaxcnn search: interrupted; {workdir} holds the search up to its last batch "
            "(continue with --resume).", file=sys.stderr)
    return 130
  except (ValueError, OSError, KeyError) as e:  # KeyError: an arch missing from a lookup table
    text = e.args[0] if isinstance(e, KeyError) and e.args else e
    print(f"jaxcnn search: {text}", file=sys.stderr)
    return 1
  if "best" not in best:  # DARTS
    print(f"DARTS ({best['order']} order, {best['num_steps']} steps) derived {best['cell']}")
    print(f"wrote {workdir}/{{config.json, {DARTS_FILE}, {BEST_FILE}, edge_weights.png, "
          "best_cell.png}")
    return 0
  top = best["best"][0]
  shown = top.get("cell") or (json.dumps(top["arch"]) if len(top["arch"]) <= 12 else
                              f"({len(top['arch'])} choices: see {BEST_FILE})")
  print(f"best of {best['num_evaluated']}: reward {top['reward']:.6g}  {shown}")
  if "final" in best:
    greedy, sampled = best["final"]["greedy"], best["final"]["sampled"][0]
    print(f"enas.final: greedy {greedy['cell']} ({greedy['reward']:.4g}); best of "
          f"{best['final']['num_samples']} samples {sampled['cell']} ({sampled['reward']:.4g})")
  print(f"wrote {workdir}/{{config.json, history.jsonl, {BEST_FILE}, reward.png"
        + (", best_cell.png" if "cell" in top else "") + "}")
  return 0
