"""``jaxcnn search``: run folders, resume, one-line errors, and the search figures."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxcnn import cli
from jaxcnn.search import benchmarks, nasbench201, plots
from jaxcnn.search import cli as search_cli

CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "configs"
PLANTED = str(CONFIGS / "search_planted.py")
NASBENCH = str(CONFIGS / "search_nasbench201.py")
SMALL = ["--config.budget=30", "--config.batch_size=6",
         "--config.strategy_kwargs.evolution.population_size=8",
         "--config.strategy_kwargs.evolution.sample_size=3"]


def _search(workdir, *extra, config=PLANTED):
  return cli.main(["search", "--config", config, "--workdir", str(workdir), *extra])


def _history(workdir):
  return [json.loads(line) for line in (Path(workdir) / "history.jsonl").read_text().splitlines()]


def _is_png(path):
  return Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_planted_run_folder_resume_and_best(tmp_path, capsys):
  assert _search(tmp_path / "a", *SMALL) == 0
  a = tmp_path / "a"
  assert {p.name for p in a.iterdir()} == {"config.json", "history.jsonl", "search_state.npz",
                                           "best.json", "reward.png"}
  history = _history(a)
  assert len(history) == 30
  best = json.loads((a / "best.json").read_text())
  rewards = [h["reward"] for h in history]
  assert best["num_evaluated"] == 30
  assert best["best"][0]["reward"] == max(rewards)
  # Distinct architectures, best first, each reward the planted table's value.
  keys = [tuple(b["indices"]) for b in best["best"]]
  assert len(set(keys)) == len(keys) == 5
  assert all(x["reward"] >= y["reward"] for x, y in zip(best["best"], best["best"][1:]))
  space = search_cli.make_space(search_cli.load_config(PLANTED))
  table, optimum = benchmarks.planted(space, seed=0)
  for b in best["best"]:
    assert b["reward"] == pytest.approx(float(np.asarray(table)[tuple(b["indices"])]))
  assert best["optimum"]["indices"] == [int(i) for i in optimum]
  assert json.loads((a / "config.json").read_text())["budget"] == 30
  assert _is_png(a / "reward.png")
  assert "best of 30: reward" in capsys.readouterr().out

  # Resume to a larger budget == an uninterrupted search of that budget.
  more = [*SMALL, "--config.budget=48"]
  assert _search(a, *more, "--resume") == 0
  assert _search(tmp_path / "b", *more) == 0
  assert _history(a) == _history(tmp_path / "b")
  assert len(_history(a)) == 48
  assert json.loads((a / "best.json").read_text()) == \
      json.loads((tmp_path / "b" / "best.json").read_text())


@pytest.mark.parametrize("strategy", ["random", "reinforce"])
def test_strategies_on_onemax(tmp_path, strategy):
  args = ["--config.num_options=(3, 4, 2)", "--config.budget=12", "--config.batch_size=4",
          f"--config.strategy={strategy}", "--config.evaluator=onemax"]
  assert _search(tmp_path / "o", *args) == 0
  history = _history(tmp_path / "o")
  assert len(history) == 12
  assert all(h["arch"] == {f"c{j}": i for j, i in enumerate(h["indices"])} for h in history)
  assert all(0 <= i < n for h in history for i, n in zip(h["indices"], (3, 4, 2)))
  assert [h["reward"] for h in history] == pytest.approx(
      [np.mean(np.asarray(h["indices"]) == 0) for h in history])
  best = json.loads((tmp_path / "o" / "best.json").read_text())
  assert best["optimum"] == {"arch": {"c0": 0, "c1": 0, "c2": 0}, "indices": [0, 0, 0],
                             "reward": 1.0}
  assert strategy in best["strategy"].lower()


def test_top_distinct_lists_each_architecture_once():
  rewards = [0.3, 0.9, 0.9, 0.5, 0.9, 0.1]
  indices = [[0], [1], [2], [0], [1], [3]]
  history = [{"index": i, "indices": a, "reward": r}
             for i, (a, r) in enumerate(zip(indices, rewards))]
  top = search_cli.top_distinct(history, 3)
  assert [(t["index"], t["rank"], t["times_evaluated"]) for t in top] == [(1, 0, 2), (2, 1, 1),
                                                                          (3, 2, 2)]
  assert len(search_cli.top_distinct(history, 10)) == 4


def test_strategy_spec_arguments_win_over_strategy_kwargs():
  config = search_cli.load_config(PLANTED)
  assert search_cli.make_strategy(config).population_size == 20
  config.strategy = "evolution(population_size=7)"
  strategy = search_cli.make_strategy(config)
  assert (strategy.population_size, strategy.sample_size) == (7, 5)
  config.strategy = "evolution(population_size=2)"  # sample_size=5 > 2 from strategy_kwargs
  with pytest.raises(search_cli.SearchConfigError, match="sample_size <= population_size"):
    search_cli.make_strategy(config)


def test_lookup_tables_npy_and_json(tmp_path):
  space = search_cli.make_space(search_cli.load_config(PLANTED))
  table = np.random.default_rng(1).random(tuple(int(n) for n in space.num_options))
  np.save(tmp_path / "t.npy", table.astype(np.float32))
  config = search_cli.load_config(PLANTED)
  config.budget, config.batch_size = 10, 5
  assert _search(tmp_path / "npy", "--config.budget=10", "--config.batch_size=5",
                 "--config.evaluator=lookup", f"--config.lookup.path={tmp_path / 't.npy'}") == 0
  config.evaluator = "lookup"
  config.lookup.path = str(tmp_path / "t.npy")
  for h in _history(tmp_path / "npy"):
    assert h["reward"] == pytest.approx(table[tuple(h["indices"])])
  # A .json mapping of comma-joined indices -> metrics.
  mapping = {",".join(map(str, h["indices"])): {"accuracy": 1.0 + h["index"]}
             for h in _history(tmp_path / "npy")}
  (tmp_path / "t.json").write_text(json.dumps(mapping))
  config.lookup.path = str(tmp_path / "t.json")
  config.strategy = "random"
  with pytest.raises(KeyError, match="not in the lookup table"):
    search_cli.search(config, tmp_path / "json", progress=False)  # another arch was asked
  config.strategy = "evolution"
  search_cli.search(config, tmp_path / "json2", progress=False)  # the same search: all known
  for h in _history(tmp_path / "json2"):
    assert h["reward"] == mapping[",".join(map(str, h["indices"]))]["accuracy"]


def test_cell_space_with_a_json_table_of_cell_strings(tmp_path):
  """The cell space without training: a lookup of every cell string; best.json names cells and
  best_cell.png is drawn."""
  import itertools
  rng = np.random.default_rng(0)
  table = {nasbench201.to_string(ops): {"accuracy": float(rng.random()), "params": 1.0}
           for ops in itertools.product(nasbench201.OPS, repeat=6)}
  (tmp_path / "cells.json").write_text(json.dumps(table))
  config = search_cli.load_config(PLANTED)
  config.space, config.evaluator, config.budget = "nasbench201", "lookup", 12
  config.lookup.path = str(tmp_path / "cells.json")
  best = search_cli.search(config, tmp_path / "run", progress=False)
  history = _history(tmp_path / "run")
  for h in history:
    assert h["reward"] == pytest.approx(table[nasbench201.to_string(tuple(h["arch"].values()))]
                                        ["accuracy"])
  top = best["best"][0]
  assert top["reward"] == max(h["reward"] for h in history)
  assert top["cell"] == nasbench201.to_string(tuple(top["arch"].values()))
  assert _is_png(tmp_path / "run" / "best_cell.png")
  # The evaluator's metrics ride in the history (search.run) and so in best.json.
  assert all(h["accuracy"] == h["reward"] and h["params"] == 1.0 for h in history)
  assert top["params"] == 1.0 and top["accuracy"] == top["reward"]


@pytest.mark.parametrize("args, message", [
    (["--config.space=cells"], "unknown space 'cells'; known spaces: nasbench201, synthetic."),
    (["--config.strategy=annealing"], "Unknown search strategy 'annealing'. Known strategies:"),
    (["--config.evaluator=oracle"], "unknown evaluator 'oracle'; known evaluators: planted, "
     "onemax, lookup, train."),
    (["--config.budget=0"], "budget must be an integer >= 1, got 0."),
    (["--config.batch_size=-2"], "batch_size must be an integer >= 1, got -2."),
    (["--config.num_options=(3, 0)"], "space 'synthetic' needs num_options"),
    (["--config.evaluator=train"], "evaluator 'train' builds NAS-Bench-201 cells"),
    (["--config.evaluator=lookup"], "evaluator 'lookup' needs --config.lookup.path"),
    (["--config.evaluator=lookup", "--config.lookup.path=/no/such.npy"],
     "lookup table '/no/such.npy' does not exist."),
    (["--config.strategy_kwargs.evolution.sample_size=50"], "Need 1 <= sample_size <= "),
    (["--config.nonsense=1"], "unknown config field 'nonsense' (--config.nonsense)"),
    (["--resume"], "--resume needs --workdir"),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, message):
  workdir = [] if "--resume" in args else ["--workdir", str(tmp_path / "w")]
  assert cli.main(["search", "--config", PLANTED, *workdir, *args]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("jaxcnn search: ") and "\n" not in err, err
  assert message in err, err


def test_workdir_errors(tmp_path, capsys):
  assert cli.main(["search"]) == 2
  assert "--config is required" in capsys.readouterr().err
  assert _search(tmp_path / "empty", "--resume") == 2
  assert "holds no saved search (search_state.npz)" in capsys.readouterr().err
  assert _search(tmp_path / "a", "--config.budget=6", "--config.batch_size=3") == 0
  capsys.readouterr()
  assert _search(tmp_path / "a", "--config.budget=6") == 2
  assert "already holds a search (search_state.npz); pass --resume" in capsys.readouterr().err
  assert _search(tmp_path / "a", "--config.budget=9", "--config.seed=1", "--resume") == 2
  err = capsys.readouterr().err
  assert "differs from the saved" in err and "in batch_size, seed;" in err, err
  assert _search(tmp_path / "a", "--config.budget=3", "--config.batch_size=3", "--resume") == 2
  assert "holds 6 evaluations, more than budget=3" in capsys.readouterr().err
  assert len(_history(tmp_path / "a")) == 6


def test_help_lists_the_config_fields(capsys):
  assert cli.main(["search", "--config", NASBENCH + ":quick", "--help"]) == 0
  out = capsys.readouterr().out
  assert "jaxcnn search --config" in out
  assert "--config.budget=4" in out and "--config.train.num_steps=10" in out
  assert "--config.strategy_kwargs.evolution.population_size=3" in out
  full = search_cli.load_config(NASBENCH)
  assert (full.budget, full.train.num_steps, full.evaluator) == (60, 200, "train")


def test_default_workdir_is_named_after_the_config(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert cli.main(["search", "--config", PLANTED, "--config.budget=4"]) == 0
  (run,) = (tmp_path / "runs").iterdir()
  assert run.name.endswith("-search-search_planted")
  assert len(_history(run)) == 4


# ------------------------------------------------------------------------------------------------
# Figures.


def test_plot_rewards_best_so_far(tmp_path):
  rewards = [0.2, 0.1, 0.5, 0.3, 0.7, 0.7, 0.0]
  best = plots.plot_rewards(rewards, str(tmp_path / "r.png"))
  expected, top = [], -np.inf
  for r in rewards:
    top = max(top, r)
    expected.append(top)
  np.testing.assert_array_equal(best, expected)
  assert _is_png(tmp_path / "r.png")
  with pytest.raises(ValueError, match="at least one reward"):
    plots.plot_rewards([], str(tmp_path / "e.png"))


def _edges_of_string(cell):
  """(from, to, op) of a cell string's non-none edges, parsed here by hand."""
  out = []
  for to, node in enumerate(cell.split("+"), start=1):
    for part in node.strip("|").split("|"):
      op, src = part.split("~")
      if op != "none":
        out.append((int(src), to, op))
  return out


@pytest.mark.parametrize("cell", [
    "|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|avg_pool_3x3~1|none~2|",
    nasbench201.to_string(["nor_conv_3x3"] * 6),
    nasbench201.to_string(["none"] * 6),
])
def test_cell_graph_draws_the_non_none_edges(tmp_path, cell):
  import matplotlib.pyplot as plt
  from matplotlib.patches import FancyArrowPatch

  expected = _edges_of_string(cell)
  fig, ax = plt.subplots()
  edges = plots.draw_cell(ax, nasbench201.encode(cell))
  assert edges == expected
  arrows = [p.get_gid() for p in ax.patches if isinstance(p, FancyArrowPatch)]
  assert arrows == [f"edge {i}->{j}" for i, j, _ in expected]
  labels = [(t.get_gid(), t.get_text()) for t in ax.texts if t.get_gid()]
  assert labels == [(f"edge {i}->{j}", op) for i, j, op in expected]
  nodes = [p.get_gid() for p in ax.patches if not isinstance(p, FancyArrowPatch)]
  assert nodes == [f"node {k}" for k in range(4)]
  plt.close(fig)
  assert plots.plot_cell(cell, str(tmp_path / "c.png")) == expected
  assert _is_png(tmp_path / "c.png")


@pytest.mark.slow
def test_nasbench201_quick_trains_each_cell(tmp_path):
  """The :quick cell search end to end (about 200 s at load 8 on 2 cores: one compile per
  distinct cell)."""
  assert _search(tmp_path / "n", config=NASBENCH + ":quick") == 0
  run = tmp_path / "n"
  history = _history(run)
  assert len(history) == 4
  assert all(0.0 <= h["reward"] <= 1.0 for h in history)
  best = json.loads((run / "best.json").read_text())
  top = best["best"][0]
  assert top["reward"] == max(h["reward"] for h in history)
  assert top["cell"] == nasbench201.to_string(tuple(top["arch"].values()))
  assert _is_png(run / "best_cell.png") and _is_png(run / "reward.png")
