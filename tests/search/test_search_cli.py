"""``jaxcnn search``: run folders, resume, one-line errors, and the search figures; ENAS and
DARTS from the command line."""

import json
import re
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import cli
from jaxcnn.data import sources
from jaxcnn.models.efficientnet import B0_STAGES
from jaxcnn.search import benchmarks, darts, enas, mbconv, nasbench201, nasnet, plots
from jaxcnn.search import cli as search_cli

CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "configs"
PLANTED = str(CONFIGS / "search_planted.py")
NASBENCH = str(CONFIGS / "search_nasbench201.py")
ENAS = str(CONFIGS / "search_enas.py")
DARTS = str(CONFIGS / "search_darts.py")
NASNET = str(CONFIGS / "search_nasnet.py")
MBCONV = str(CONFIGS / "search_mbconv.py")
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


def test_small_cell_space_with_a_json_table(tmp_path):
  """nasbench201_small: four free edges; the table and best.json name the full cells."""
  import itertools
  small_ops = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3")
  rng = np.random.default_rng(0)
  table = {_cell_string([a, "none", b, d, "none", c]): float(rng.random())
           for a, b, c, d in itertools.product(small_ops, repeat=4)}  # 1<-0, 2<-1, 3<-2, 3<-0
  (tmp_path / "small.json").write_text(json.dumps(table))
  config = search_cli.load_config(PLANTED)
  config.space, config.evaluator, config.budget = "nasbench201_small", "lookup", 12
  config.strategy = "random"  # the cheapest strategy to compile
  config.lookup.path = str(tmp_path / "small.json")
  best = search_cli.search(config, tmp_path / "run", progress=False)
  for h in _history(tmp_path / "run"):
    a = h["arch"]
    assert list(a) == ["1<-0", "2<-1", "3<-2", "3<-0"] and len(h["indices"]) == 4
    assert h["reward"] == pytest.approx(
        table[_cell_string([a["1<-0"], "none", a["2<-1"], a["3<-0"], "none", a["3<-2"]])])
  top = best["best"][0]
  assert table[top["cell"]] == pytest.approx(top["reward"])
  assert _is_png(tmp_path / "run" / "best_cell.png")


@pytest.mark.parametrize("args, message", [
    (["--config.space=cells"], "unknown space 'cells'; known spaces: nasbench201, "
     "nasbench201_small, nasnet, mbconv, synthetic."),
    (["--config.strategy=annealing"], "Unknown search strategy 'annealing'. Known strategies:"),
    (["--config.evaluator=oracle"], "unknown evaluator 'oracle'; known evaluators: planted, "
     "onemax, lookup, train, shared_training."),
    (["--config.budget=0"], "budget must be an integer >= 1, got 0."),
    (["--config.batch_size=-2"], "batch_size must be an integer >= 1, got -2."),
    (["--config.num_options=(3, 0)"], "space 'synthetic' needs num_options"),
    (["--config.evaluator=train"], "evaluator 'train' builds each candidate with its space's "
     "build: it needs space nasbench201, nasbench201_small, nasnet, mbconv, got 'synthetic'."),
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


# ------------------------------------------------------------------------------------------------
# ENAS and DARTS. The fast tests run the :quick configs without the real networks' compile (the
# supernet's init and step, DARTS's step: about a minute of CPU each): ENAS on a linear stand-in
# of the supernet (the controller and the alternation are ENAS's own), DARTS with darts.search
# replaced by a recording stand-in (the run folder is what the command line adds; darts.search is
# tested in test_darts.py). The slow tests run the real networks.


class TinySupernet(nn.Module):
  """The supernet's call, ``(x, arch int32 [6], *, train)``, as a linear classifier plus one
  learned class bias per (edge, op) on the path: ``x W + b + sum_e B[e, arch[e]]``; zero initial
  weights (random ones would compile the PRNG for seconds)."""

  @nn.compact
  def __call__(self, x, arch=None, *, train):
    del train
    arch = jnp.zeros(6, jnp.int32) if arch is None else arch
    bias = self.param("op_bias", nn.initializers.zeros, (6, 5, 10))
    head = nn.Dense(10, kernel_init=nn.initializers.zeros, name="head")
    return head(x.reshape(x.shape[0], -1)) + bias[jnp.arange(6), arch].sum(0)


def _accuracy(params, images, labels, full_arch):
  """TinySupernet's accuracy, in NumPy."""
  x = np.asarray(images, np.float64).reshape(len(images), -1) / 255.0
  logits = (x @ np.asarray(params["head"]["kernel"]) + np.asarray(params["head"]["bias"])
            + np.asarray(params["op_bias"])[np.arange(6), full_arch].sum(0))
  return float(np.mean(logits.argmax(-1) == labels))


def _cell_parts(cell):
  """The six op names of a cell string, parsed here by hand."""
  return [part.split("~")[0] for node in cell.split("+") for part in node.strip("|").split("|")]


def _cell_string(ops):
  """A cell string from six op names in edge order 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2."""
  return f"|{ops[0]}~0|+|{ops[1]}~0|{ops[2]}~1|+|{ops[3]}~0|{ops[4]}~1|{ops[5]}~2|"


def test_enas_run_folder_resume_and_final(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(search_cli, "supernet", lambda config, num_classes: TinySupernet())
  trainers, final = [], enas.final

  def spy(strategy, state, evaluator, key, **kwargs):
    trainers.append(evaluator)
    return final(strategy, state, evaluator, key, **kwargs)

  monkeypatch.setattr(enas, "final", spy)
  a, b = tmp_path / "a", tmp_path / "b"
  assert _search(a, config=ENAS + ":quick") == 0  # budget 8 in steps of 4
  assert {p.name for p in a.iterdir()} == {
      "config.json", "history.jsonl", "search_state.npz", "shared_weights_1.npz",
      "shared_weights_2.npz", "best.json", "reward.png", "best_cell.png"}
  assert "enas.final: greedy |" in capsys.readouterr().out
  # Resumed to a larger budget == uninterrupted: the shared weights continue exactly.
  assert _search(a, "--config.budget=12", "--resume", config=ENAS + ":quick") == 0
  assert _search(b, "--config.budget=12", config=ENAS + ":quick") == 0
  history = _history(a)
  assert history == _history(b) and len(history) == 12
  best = json.loads((a / "best.json").read_text())
  assert best == json.loads((b / "best.json").read_text())
  assert sorted(p.name for p in a.glob("shared_weights_*")) == ["shared_weights_2.npz",
                                                                "shared_weights_3.npz"]
  # SMALL's cells: the fixed edges 2<-0 and 3<-1 are none in every cell string.
  for h in best["best"]:
    ops = _cell_parts(h["cell"])
    assert ops[1] == ops[4] == "none"
    assert [ops[0], ops[2], ops[5], ops[3]] == [h["arch"][n] for n in ("1<-0", "2<-1", "3<-2",
                                                                      "3<-0")]
  # enas.final's rewards: the accuracy of each cell with the final shared weights, in NumPy.
  val = sources.subsets("digits", {"train": 64, "val": 32}, seed=0)["val"]
  params = trainers[-1].variables["params"]
  final_best = best["final"]
  assert final_best["num_samples"] == 4 and 1 <= len(final_best["sampled"]) <= 3
  for record in [final_best["greedy"], *final_best["sampled"]]:
    full = [nasbench201.OPS.index(op) for op in _cell_parts(record["cell"])]
    assert record["reward"] == pytest.approx(
        _accuracy(params, val["image"], val["label"], full), abs=1e-6)
  rewards = [r["reward"] for r in final_best["sampled"]]
  assert rewards == sorted(rewards, reverse=True)
  assert _is_png(a / "best_cell.png") and _is_png(a / "reward.png")


def test_random_search_with_shared_weights(tmp_path, monkeypatch):
  """Another strategy over the same evaluator: random search with weight sharing (no final)."""
  monkeypatch.setattr(search_cli, "supernet", lambda config, num_classes: TinySupernet())
  trainers, init = [], enas.SharedTraining.__init__

  def spy(self, *args, **kwargs):
    trainers.append(self)
    init(self, *args, **kwargs)

  monkeypatch.setattr(enas.SharedTraining, "__init__", spy)
  run = tmp_path / "r"
  assert _search(run, "--config.strategy=random", config=ENAS + ":quick") == 0
  best = json.loads((run / "best.json").read_text())
  assert "final" not in best and "Random" in best["strategy"]
  history = _history(run)
  assert len(history) == 8 and int(trainers[0].state.step) == 2 * 2  # two steps of train_steps=2
  # The last step's rewards: each cell's accuracy with the final shared weights, in NumPy.
  val = sources.subsets("digits", {"train": 64, "val": 32}, seed=0)["val"]
  for h in history[4:]:  # SMALL's free edges; 2<-0 and 3<-1 are none
    a = h["arch"]
    ops = [a["1<-0"], "none", a["2<-1"], a["3<-0"], "none", a["3<-2"]]
    full = [nasbench201.OPS.index(op) for op in ops]
    assert h["reward"] == pytest.approx(_accuracy(trainers[0].variables["params"], val["image"],
                                                  val["label"], full), abs=1e-6)


def test_darts_run_folder(tmp_path, monkeypatch, capsys):
  calls = []

  def fake_search(net, source, **kwargs):  # darts.search's result, from NumPy
    calls.append((net, source, kwargs))
    steps = kwargs["num_steps"]
    alpha = np.random.default_rng(len(calls)).normal(size=(steps + 1, 6, 5)).astype(np.float32)
    return darts.SearchResult(
        arch=darts.derive(alpha[-1], net.mask, keep_none=kwargs["keep_none"]), alpha=alpha[-1],
        alpha_history=alpha, train_loss=np.linspace(2, 1, steps, dtype=np.float32),
        val_loss=np.linspace(3, 2, steps, dtype=np.float32), variables={})

  monkeypatch.setattr(darts, "search", fake_search)
  run = tmp_path / "d"
  assert _search(run, config=DARTS + ":quick") == 0
  assert {p.name for p in run.iterdir()} == {"config.json", "darts.npz", "best.json",
                                             "edge_weights.png", "best_cell.png"}
  # The config's settings reach darts.search.
  net, source, kwargs = calls[0]
  assert (net.num_cells, net.channels, net.num_classes) == (1, 4, 10)
  np.testing.assert_array_equal(net.mask, nasbench201.SMALL.mask)
  assert {s: len(source.splits[s]["label"]) for s in ("train", "val")} == {"train": 64, "val": 32}
  assert (kwargs["num_steps"], kwargs["batch_size"], kwargs["xi"], kwargs["keep_none"]) == (
      3, 16, 0.0, True)
  np.testing.assert_array_equal(kwargs["key"], jax.random.PRNGKey(0))
  with np.load(run / "darts.npz") as f:
    alpha, weights = f["alpha_history"], f["edge_weights"]
    np.testing.assert_array_equal(f["train_loss"], np.linspace(2, 1, 3, dtype=np.float32))
  assert alpha.shape == weights.shape == (4, 6, 5)  # before the first step and after each
  # The op weights: a softmax over each edge's allowed ops, in NumPy.
  allowed = np.asarray(nasbench201.SMALL.mask)
  z = np.where(allowed, alpha.astype(np.float64), -np.inf)
  expected = np.exp(z - z.max(-1, keepdims=True))
  np.testing.assert_allclose(weights, expected / expected.sum(-1, keepdims=True), atol=1e-6)
  # The derived cell: every edge's largest allowed alpha (none a candidate: keep_none=True), in
  # SMALL's indices too.
  best = json.loads((run / "best.json").read_text())
  ops = [nasbench201.OPS[i] for i in np.argmax(z[-1], -1)]
  assert best["cell"] == _cell_string(ops)
  free = ("1<-0", "2<-1", "3<-2", "3<-0")
  assert best["arch"] == {n: ops[nasbench201.SPACE.names.index(n)] for n in free}
  small_ops = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3")
  assert best["indices"] == [small_ops.index(best["arch"][n]) for n in free]
  assert best["order"] == "first" and best["num_steps"] == 3 and best["val_loss"] == 2.0
  assert best["edge_weights"]["2<-0"] == {"none": 1.0}
  assert best["edge_weights"]["1<-0"] == pytest.approx(dict(zip(small_ops, weights[-1, 0, :4])))
  assert _is_png(run / "edge_weights.png") and _is_png(run / "best_cell.png")
  assert "DARTS (first order, 3 steps) derived |" in capsys.readouterr().out
  # The original rule, second order, on all ops.
  assert _search(tmp_path / "e", "--config.strategy=darts(keep_none=False)",
                 "--config.darts.xi=0.025", "--config.space=nasbench201",
                 config=DARTS + ":quick") == 0
  net, _, kwargs = calls[1]
  assert net.mask is None and kwargs["keep_none"] is False and kwargs["xi"] == 0.025
  best = json.loads((tmp_path / "e" / "best.json").read_text())
  alpha = np.load(tmp_path / "e" / "darts.npz")["alpha_history"][-1]
  assert best["cell"] == _cell_string([nasbench201.OPS[1 + i] for i in alpha[:, 1:].argmax(-1)])
  assert best["order"] == "second" and len(best["indices"]) == 6
  # No resume for DARTS, and a run folder is not overwritten.
  capsys.readouterr()
  for extra in (["--resume"], []):
    assert _search(run, *extra, config=DARTS + ":quick") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and ("runs in one go" if extra else "already holds a search (darts.npz)") \
        in err, err
  assert _search(run, config=ENAS + ":quick") == 2  # nor by another search
  assert "already holds a DARTS search (darts.npz)" in capsys.readouterr().err
  assert len(calls) == 2


@pytest.mark.parametrize("config, args, message", [
    (ENAS, ["--config.evaluator=lookup"], "strategy 'enas' trains its controller in turn with "
     "the shared weights: it needs evaluator 'shared_training'"),
    (PLANTED, ["--config.strategy=enas"], "it needs evaluator 'shared_training' (see "
     "experiments/configs/search_enas.py), got 'planted'."),
    (PLANTED, ["--config.strategy=random", "--config.evaluator=shared_training"],
     "evaluator 'shared_training' builds NAS-Bench-201 cells: it needs space 'nasbench201' or "
     "'nasbench201_small', got 'synthetic'."),
    (PLANTED, ["--config.strategy=darts"], "strategy 'darts' relaxes the NAS-Bench-201 cells: "
     "it needs space 'nasbench201' or 'nasbench201_small', got 'synthetic'."),
    (DARTS, ["--config.space=synthetic"], "strategy 'darts' relaxes the NAS-Bench-201 cells"),
    (NASBENCH, ["--config.strategy=darts"], "strategy 'darts' is run by darts.search, not by "
     "asking and telling: it needs the darts.* and data.* fields of "
     "experiments/configs/search_darts.py."),
    (ENAS, ["--config.strategy=darts"], "the darts.* and data.* fields"),
    (DARTS, ["--config.darts.num_steps=0"], "darts.num_steps must be an integer >= 1, got 0."),
    (DARTS, ["--config.darts.xi=-0.1"], "darts.xi must be >= 0 (0: first order), got -0.1."),
    (DARTS, ["--config.strategy=darts(keep=1)"], "keep"),
    (ENAS, ["--config.shared.train_steps=0"], "shared: Need train_steps >= 1"),
])
def test_enas_and_darts_wrong_combinations_are_one_line(tmp_path, capsys, config, args, message):
  assert cli.main(["search", "--config", config, "--workdir", str(tmp_path / "w"), *args]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("jaxcnn search: ") and "\n" not in err, err
  assert message in err, err


@pytest.mark.slow
def test_enas_quick_on_the_supernet_resumes_exactly(tmp_path):
  """search_enas.py:quick as documented, on the real supernet (about a minute of CPU: its init
  and train step compile once for the three runs)."""
  a, b = tmp_path / "a", tmp_path / "b"
  assert _search(a, config=ENAS + ":quick") == 0
  assert _search(a, "--config.budget=12", "--resume", config=ENAS + ":quick") == 0
  assert _search(b, "--config.budget=12", config=ENAS + ":quick") == 0
  assert _history(a) == _history(b) and len(_history(a)) == 12
  best = json.loads((a / "best.json").read_text())
  assert best == json.loads((b / "best.json").read_text())
  assert all(0.0 <= h["reward"] <= 1.0 for h in _history(a))
  # The greedy cell is one of final's candidates: the best of them scores at least as high.
  assert best["final"]["sampled"][0]["reward"] >= best["final"]["greedy"]["reward"]
  assert _is_png(a / "best_cell.png")


@pytest.mark.slow
def test_darts_quick_on_small(tmp_path):
  """search_darts.py:quick as documented (SMALL's mask; about a minute of CPU)."""
  run = tmp_path / "d"
  assert _search(run, config=DARTS + ":quick") == 0
  best = json.loads((run / "best.json").read_text())
  ops = _cell_parts(best["cell"])
  assert ops[1] == ops[4] == "none"  # SMALL's fixed edges
  assert set(ops) <= {"none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3"}
  assert [best["arch"][n] for n in ("1<-0", "2<-1", "3<-2", "3<-0")] == [ops[0], ops[2], ops[5],
                                                                         ops[3]]
  assert set(best["edge_weights"]["2<-0"]) == {"none"}
  with np.load(run / "darts.npz") as f:
    assert f["alpha_history"].shape == (4, 6, 5)
  assert _is_png(run / "edge_weights.png")


# ------------------------------------------------------------------------------------------------
# The NASNet and MBConv spaces: searched without training (planted, onemax, lookup) in the fast
# tests, trained end to end by the slow ones.


def _check_decoded(space, record):
  """best.json's genotypes / stages against the option names of its arch (not decode)."""
  arch = record["arch"]
  if space == "nasnet":
    for cell in ("normal", "reduction"):
      genotype = record["genotypes"][cell]
      assert genotype["blocks"] == [[[arch[f"{cell}_{b}_op_{j}"], arch[f"{cell}_{b}_input_{j}"]]
                                     for j in (1, 2)] for b in range(5)]
      read = {arch[f"{cell}_{b}_input_{j}"] for b in range(5) for j in (1, 2)}
      labels = {"h": 0, "p": 1} if cell == "normal" else {}
      labels.update({str(b): 2 + b for b in range(4)})
      kept = {s for label, s in labels.items() if arch[f"{cell}_concat_{label}"]}
      kept |= {2 + b for b in range(5) if 2 + b not in read}  # unread blocks: always
      assert genotype["concat"] == sorted(kept)
  else:
    assert len(record["stages"]) == 7
    for i, (stage, base) in enumerate(zip(record["stages"], B0_STAGES), start=1):
      for field in ("kernel", "expansion", "se_ratio", "repeats"):
        assert stage[field] == arch[f"stage{i}/{field}"]
      assert (stage["stride"], stage["channels"]) == (base.stride, base.channels)


@pytest.mark.parametrize("config, strategy", [(NASNET, "evolution"), (NASNET, "reinforce"),
                                              (MBCONV, "random"), (MBCONV, "evolution")])
def test_new_spaces_planted(tmp_path, capsys, config, strategy):
  """A planted optimum over spaces too large for a dense table: every reward counts the choices
  equal to the optimum's (plus a tiebreak < 0.01), and best.json decodes the best (the console
  line points there rather than printing every choice)."""
  assert _search(tmp_path / "p", "--config.evaluator=planted", f"--config.strategy={strategy}",
                 "--config.budget=12", "--config.batch_size=4", config=config) == 0
  out = capsys.readouterr().out
  assert re.search(r"best of 12: reward \S+  \((50|28) choices: see best\.json\)", out), out
  best = json.loads((tmp_path / "p" / "best.json").read_text())
  optimum = np.asarray(best["optimum"]["indices"])
  assert best["optimum"]["reward"] == pytest.approx(len(optimum), abs=0.01)
  history = _history(tmp_path / "p")
  assert len(history) == 12
  for h in history:
    matches = int((np.asarray(h["indices"]) == optimum).sum())
    assert matches <= h["reward"] < matches + 0.01
  space = "nasnet" if config == NASNET else "mbconv"
  assert best["space"] == space
  top = best["best"][0]
  assert top["reward"] == max(h["reward"] for h in history)
  _check_decoded(space, top)
  _check_decoded(space, best["optimum"])


@pytest.mark.parametrize("config", [NASNET, MBCONV])
def test_new_spaces_lookup_json_of_indices(tmp_path, config):
  """A .json table keyed by comma-joined indices: random search asks the same archs whatever
  the rewards, so a table of a first (onemax) search's archs serves a second one."""
  base = ["--config.strategy=random", "--config.budget=6", "--config.batch_size=3"]
  assert _search(tmp_path / "a", *base, "--config.evaluator=onemax", config=config) == 0
  first = _history(tmp_path / "a")
  for h in first:  # onemax: the fraction of choices at option 0
    assert h["reward"] == pytest.approx(np.mean(np.asarray(h["indices"]) == 0))
  mapping = {",".join(map(str, h["indices"])): {"accuracy": 0.5 + 0.01 * h["index"], "macs": 7}
             for h in first}
  (tmp_path / "t.json").write_text(json.dumps(mapping))
  assert _search(tmp_path / "b", *base, "--config.evaluator=lookup",
                 f"--config.lookup.path={tmp_path / 't.json'}", config=config) == 0
  history = _history(tmp_path / "b")
  assert [h["indices"] for h in history] == [h["indices"] for h in first]
  for h in history:
    assert h["reward"] == pytest.approx(mapping[",".join(map(str, h["indices"]))]["accuracy"])
    assert h["macs"] == 7
  top = json.loads((tmp_path / "b" / "best.json").read_text())["best"][0]
  assert top["reward"] == pytest.approx(0.55)


@pytest.mark.parametrize("config, args, message", [
    (NASNET, ["--config.train.channels=8"], "unknown config field 'train.channels'"),
    (NASBENCH, ["--config.space=nasnet"], "train.channels does not fit space 'nasnet': its model "
     "fields are num_cells, penultimate_filters, stem_features, filter_multiplier, stem, "
     "dropout_rate."),
    (NASBENCH, ["--config.space=mbconv"], "train.channels does not fit space 'mbconv': its model "
     "fields are width, depth, dropout_rate, drop_path_rate."),
    (MBCONV, ["--config.space=nasnet"], "train.depth does not fit space 'nasnet'"),
    (NASNET, ["--config.space=synthetic"], "evaluator 'train' builds each candidate"),
    (NASNET, ["--config.evaluator=shared_training"], "evaluator 'shared_training' builds "
     "NAS-Bench-201 cells: it needs space 'nasbench201' or 'nasbench201_small', got 'nasnet'."),
    (MBCONV, ["--config.strategy=darts"], "strategy 'darts' relaxes the NAS-Bench-201 cells: it "
     "needs space 'nasbench201' or 'nasbench201_small', got 'mbconv'."),
    (NASNET, ["--config.train.penultimate_filters=50"], "train: Need num_cells >= 1 and "
     "penultimate_filters a multiple of 24"),
])
def test_new_spaces_bad_config_is_one_line(tmp_path, capsys, config, args, message):
  assert _search(tmp_path / "w", *args, config=config) == 2
  err = capsys.readouterr().err
  lines = [line for line in err.split("\n") if "jaxcnn search: " in line]  # past data progress
  assert len(lines) == 1 and err.strip().endswith(lines[0].split("\r")[-1].strip()), err
  assert message in lines[0], err


def _count_params(model, shape):
  """Parameters of an initialised model (not the shape trace that costs.Costs uses)."""
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, *shape)), train=False)
  return sum(x.size for x in jax.tree.leaves(variables["params"]))


@pytest.mark.slow
@pytest.mark.parametrize("config", [NASNET, MBCONV])
def test_new_spaces_quick_train(tmp_path, config):
  """The :quick configs end to end, each candidate built by its space's build and trained (about
  a minute each at load 1-2 on 2 cores, most of it compiling)."""
  assert _search(tmp_path / "q", config=config + ":quick") == 0
  cfg = search_cli.load_config(config + ":quick")
  history = _history(tmp_path / "q")
  assert len(history) == cfg.budget
  assert all(0.0 <= h["reward"] <= 1.0 and h["seconds"] >= 0 for h in history)
  best = json.loads((tmp_path / "q" / "best.json").read_text())
  top = best["best"][0]
  assert top["reward"] == max(h["reward"] for h in history)
  _check_decoded(cfg.space, top)
  fields = {f: cfg.train[f] for f in search_cli.MODEL_FIELDS[cfg.space]}
  model = (nasnet.build if cfg.space == "nasnet" else mbconv.build)(
      np.asarray(top["indices"]), num_classes=10, **fields)
  assert top["params"] == _count_params(model, (8, 8, 1))
  assert top["macs"] > 0
