"""NAS-strategies study: random search's exact figures against Monte Carlo, the curves and rows
against hand computations, and a run end to end on a stand-in table (not the shipped one)."""

import pathlib
import types

import numpy as np
import pytest
from scipy import stats

from jaxcnn.search import benchmarks, nasbench201 as nb
from jaxcnn.studies import common, nas

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "configs"


def _stand_in() -> np.ndarray:
  """A 256-cell table with a planted optimum (not the shipped one), accuracies in [0, 1]."""
  return np.asarray(benchmarks.planted(nb.SMALL.space, seed=3)[0], np.float32) / 4.01


def test_cells_and_parameter_free_edges():
  arch = nb.SMALL.space.encode({"1<-0": "nor_conv_3x3", "2<-1": "skip_connect",
                                "3<-2": "none", "3<-0": "nor_conv_1x1"})
  # Edge order of the cell string: 1<-0 | 2<-0 2<-1 | 3<-0 3<-1 3<-2; the fixed edges are none.
  assert nas.cell_string(arch) == ("|nor_conv_3x3~0|+|none~0|skip_connect~1|+"
                                   "|nor_conv_1x1~0|none~1|none~2|")
  assert nas.parameter_free_edges(arch) == 2
  assert nas.parameter_free_edges([0, 1, 0, 1]) == 4 and nas.parameter_free_edges([3, 2, 3, 2]) == 0


def test_top_threshold_counts_ties():
  table = np.array([0.1, 0.9, 0.9, 0.5, 0.3] + [0.0] * 195)  # 200 cells: ceil(1%) = 2
  assert nas.top_threshold(table, 0.01) == 0.9
  assert nas.top_threshold(table, 0.015) == 0.5  # the 3rd best
  with pytest.raises(ValueError, match="top_fraction must lie in"):
    nas.top_threshold(table, 0.0)


def test_random_search_exact_figures_match_monte_carlo():
  """The closed forms against 20,000 simulated searches in NumPy (independent draws)."""
  rng = np.random.default_rng(0)
  table = np.round(rng.uniform(size=256), 2)  # ties, as in a real table
  budget, n = 12, 20_000
  draws = table[rng.integers(0, 256, size=(n, budget))].max(1)
  threshold = nas.top_threshold(table, 0.01)
  for t in (table.max(), threshold):
    p = nas.random_success(table, t, budget)
    assert abs(np.mean(draws >= t) - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-9
  expected = table.max() - draws.mean()
  assert abs(nas.random_regret(table, budget) - expected) < 4 * draws.std() / np.sqrt(n)
  assert nas.random_regret(table, 1) == pytest.approx(table.max() - table.mean())


def test_curves_by_hand():
  table = np.array([0.2, 0.5, 0.9, 0.8] + [0.1] * 96)  # best 0.9
  rewards = np.array([[0.2, 0.8, 0.5, 0.9],
                      [0.5, 0.5, 0.9, 0.1]])
  c = nas.curves(rewards, table, [1, 2, 3, 4], top_fraction=0.02)  # top 2%: >= 0.8
  np.testing.assert_allclose(c["regret_mean"], [(0.7 + 0.4) / 2, (0.1 + 0.4) / 2, 0.05, 0.0])
  np.testing.assert_allclose(c["success_best"], [0, 0, 0.5, 1])
  np.testing.assert_allclose(c["success_top"], [0, 0.5, 1, 1])
  with pytest.raises(ValueError, match="budgets in"):
    nas.curves(rewards, table, [5])


def test_measured_random_search_matches_its_exact_success():
  """The JAX simulation of random search (strategies + benchmarks.simulate) against the formula."""
  table = _stand_in()
  rows = nas.table_study(table, [("random", "random")], [10, 40], num_seeds=2000, seed=1)
  for r in rows:
    for key in ("success_best", "success_top"):
      p = r[f"{key}_exact"]
      assert abs(r[key] - p) < 4 * np.sqrt(p * (1 - p) / 2000) + 1e-9, (r["budget"], key)
    assert r["regret_mean"] == pytest.approx(r["regret_exact"], abs=0.01)


def test_ws_row_and_spearman():
  table = _stand_in()
  flat = table.reshape(-1)
  arch = nb.SMALL.all()[17]
  row = nas.ws_row("enas", 0, {"arch": arch, "shared_accuracy": 0.5, "weight_steps": 10,
                               "all_shared": flat[::-1].copy()}, table, 1.0)
  assert row["table_accuracy"] == pytest.approx(flat[17])
  assert row["regret"] == pytest.approx(flat.max() - flat[17])
  assert row["rank"] == 1 + int(np.sum(flat > flat[17]))
  assert row["parameter_free"] == nas.parameter_free_edges(arch)
  assert row["spearman"] == pytest.approx(stats.spearmanr(flat[::-1], flat).statistic)
  a = np.array([1.0, 2.0, 2.0, 5.0, 3.0])
  b = np.array([0.5, 0.1, 0.3, 0.9, 0.9])
  assert nas.spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)


def test_run_quick_on_a_stand_in_table(tmp_path, monkeypatch):
  """The quick setting end to end (part 1), with the table replaced by the stand-in."""
  table = _stand_in()
  monkeypatch.setattr(nas, "load_table", lambda name: (table, types.SimpleNamespace()))
  config = common.load_config(CONFIGS / "nas.py", "quick")
  config.num_seeds = 20
  results = nas.run(config, str(tmp_path))
  assert {r["strategy"] for r in results.strategies} == {"random", "evolution", "reinforce"}
  assert results.table["best_accuracy"] == pytest.approx(table.max())
  text = (tmp_path / "nas.md").read_text()
  assert "Part 1" in text and (tmp_path / "regret.png").stat().st_size > 0
  assert (tmp_path / "results.json").exists()


@pytest.mark.slow
def test_weight_sharing_methods_derive_cells_of_the_space():
  """ENAS, one-shot random search and first-order DARTS, a few steps each, on the digits."""
  from jaxcnn.search import tabular  # pylint: disable=g-import-not-at-top

  config = common.load_config(CONFIGS / "nas.py", "quick")
  config.ws_methods = ("enas", "random_ws", "darts_v1")
  config.ws_steps, config.enas_train_steps, config.final_samples = 10, 5, 8
  table = _stand_in()
  rows = nas.ws_study(config, table, tabular.load_splits(tabular.Recipe(num_train=256,
                                                                        num_val=64)))
  assert [r["method"] for r in rows] == ["enas", "random_ws", "darts_v1"]
  for r in rows:
    arch = np.asarray(r["indices"])
    assert r["table_accuracy"] == pytest.approx(table[tuple(arch)])
    assert r["parameter_free"] == sum(op in nas.PARAMETER_FREE for op in r["ops"])
    assert r["cell"] == nas.cell_string(arch)
  assert all(-1 <= r["spearman"] <= 1 for r in rows[:2])
  assert 0 <= rows[0]["shared_accuracy"] <= 1 and rows[2]["shared_accuracy"] is None
