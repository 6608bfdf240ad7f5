"""The shipped tabular benchmark, and search strategies against random search on it and on a
planted optimum, over many seeds at a fixed budget."""

import dataclasses
import functools
import json

import jax
import numpy as np
import pytest
from scipy import stats

from jaxcnn import search
from jaxcnn.search import benchmarks, nasbench201 as nb, tabular

SEEDS = 100
BUDGET = 30  # random finds one of the 3 best of 256 cells with p = 1 - (253 / 256) ** 30 = 0.30
# Regenerated (1 seed) minus shipped (3 seeds vmapped together), measured on CPU: accuracy 0,
# val loss 1.1e-4, train loss 1.2e-5; the tolerance allows one validation example to flip.
TOLERANCE = {"val_accuracy": 1 / 418 + 1e-6, "val_loss": 1e-3, "train_loss": 1e-3}


@functools.lru_cache(maxsize=None)
def table(name="digits"):
  return tabular.load(name)


# The best mean validation accuracy each shipped table must reach: the digits are nearly solved in
# 60 steps; CIFAR-10 after 60 steps (0.4 epochs of 5,000 images) is well above chance, 0.1.
BEST_AT_LEAST = {"digits": 0.9, "cifar10": 0.25}


@pytest.mark.parametrize("name", sorted(BEST_AT_LEAST))
def test_shipped_table_loads_with_every_cell_and_finite_values(name):
  t = table(name)
  assert t.recipe.dataset == name
  assert t.space.size == 256 and len(t.indices) == 256
  assert len({tuple(a) for a in t.indices.tolist()}) == 256  # every cell once
  assert sorted(map(tuple, t.indices.tolist())) == sorted(map(tuple, nb.SMALL.all().tolist()))
  # The cell strings are those of the indices (SMALL's edges in the full 6-edge cell).
  assert t.cells == [nb.to_string(nb.arch_ops(a)) for a in nb.SMALL.to_full(t.indices)]
  n_seeds = len(t.recipe.seeds)
  for metric, values in t.metrics.items():
    assert values.shape == (256, n_seeds) and np.isfinite(values).all(), metric
  acc = t.metrics["val_accuracy"]
  assert ((acc >= 0) & (acc <= 1)).all()
  # Validation accuracies are counts over the val split.
  np.testing.assert_allclose(acc * t.recipe.num_val, np.round(acc * t.recipe.num_val), atol=1e-3)
  # The all-none cell outputs zeros: the classifier sees a constant, so it is at chance.
  none = np.flatnonzero((t.indices == 0).all(1))[0]
  assert acc[none].mean() < 0.2 and acc.mean(1).max() > BEST_AT_LEAST[name]
  assert (t.params > 0).all() and (t.macs > 0).all()
  # Costs grow with the convolutions: the all-3x3 cell is the most expensive.
  assert t.macs.argmax() == np.flatnonzero((t.indices == 3).all(1))[0]
  assert t.versions["jax"] == jax.__version__


def test_lookup_dense_regret_and_top_agree_with_the_rows():
  t = table()
  rng = np.random.default_rng(0)
  rows = rng.integers(0, 256, 20)
  archs = t.indices[rows]
  mean = t.metrics["val_accuracy"].mean(1)
  rewards, metrics = t.lookup().evaluate(archs)
  np.testing.assert_allclose(rewards, mean[rows], rtol=1e-6)
  np.testing.assert_allclose(metrics["regret"], mean.max() - mean[rows], atol=1e-6)
  np.testing.assert_allclose(t.regret(archs), mean.max() - mean[rows], atol=1e-6)
  np.testing.assert_allclose(t.lookup(seed=2)(archs), t.metrics["val_accuracy"][rows, 2])
  dense = t.dense()
  assert dense.shape == (4, 4, 4, 4)
  np.testing.assert_allclose(benchmarks.lookup(dense)(archs), mean[rows], rtol=1e-6)
  top = t.top(0.01)
  k = int((mean >= np.sort(mean)[-3]).sum())  # the 3 best (1% of 256) and any ties with them
  assert top.sum() == k >= 3 and mean[top].min() == np.sort(mean)[-3]
  with pytest.raises(ValueError, match="seed must index"):
    t.lookup(seed=len(t.recipe.seeds))
  with pytest.raises(ValueError, match="No shipped table 'imagenet'"):
    tabular.load("imagenet")
  with pytest.raises(ValueError, match="Unknown metric"):
    t.mean("test_accuracy")


def test_a_search_runs_on_the_table():
  t = table()
  result = search.run(t.space, search.strategies.get("random"), t.lookup(), budget=16,
                      key=jax.random.PRNGKey(0), batch_size=4, progress=False)
  mean = t.mean()
  index = [int(np.flatnonzero((t.indices == a).all(1))[0]) for a in result.archs]
  np.testing.assert_allclose(result.rewards, mean[index], rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# Strategies over many seeds: a Python loop over the steps of jitted, seed-vmapped ask and tell
# (the key scheme of search.run), rewards read on the host.


@functools.lru_cache(maxsize=None)
def _vmapped(strategy, num):
  init = jax.jit(jax.vmap(strategy.init, in_axes=(0, None)), static_argnums=1)
  ask = jax.jit(jax.vmap(lambda k, s: strategy.ask(k, s, num)))
  tell = jax.jit(jax.vmap(strategy.tell))
  return init, ask, tell


def found(strategy, space, dense, top_value, budget, batch_size=1, seed=7):
  """float: the fraction of SEEDS searches whose evaluations include a reward >= top_value."""
  init, ask, tell = _vmapped(strategy, batch_size)
  keys = jax.random.split(jax.random.PRNGKey(seed), SEEDS)
  split = jax.vmap(jax.random.split)(keys)
  init_keys, loop_keys = split[:, 0], split[:, 1]
  state = init(init_keys, space)
  best = np.full(SEEDS, -np.inf)
  for step in range(budget // batch_size):
    archs, state = ask(jax.vmap(jax.random.fold_in, in_axes=(0, None))(loop_keys, step), state)
    archs = np.asarray(archs)  # [SEEDS, batch, L]
    rewards = dense[tuple(np.moveaxis(archs, -1, 0))].astype(np.float32)
    state = tell(state, archs, rewards)
    best = np.maximum(best, rewards.max(1))
  return float((best >= top_value).mean())


def check_against_random(space, dense, top_value, budget, strategies):
  k, n = int((dense >= top_value).sum()), dense.size
  p = 1 - (1 - k / n) ** budget  # random search draws uniformly, with replacement
  random = found(search.strategies.get("random"), space, dense, top_value, budget)
  lo, hi = stats.binom.interval(0.999, SEEDS, p)
  assert lo <= random * SEEDS <= hi, (random, p)
  rates = {}
  for name, batch_size, kwargs in strategies:
    rates[name] = found(search.strategies.get(name, **kwargs), space, dense, top_value, budget,
                        batch_size)
  print(f"top {k}/{n}, budget {budget}: random {random:.2f} (analytic {p:.2f}), "
        + ", ".join(f"{name} {r:.2f}" for name, r in rates.items()))
  return random, rates


STRATEGIES = [("evolution", 1, dict(population_size=10, sample_size=3)),
              ("reinforce", 5, dict(learning_rate=0.2))]


def test_strategies_beat_random_on_a_planted_optimum():
  # The table's space, so the compiled searches are shared with the next test.
  dense, _ = benchmarks.planted(nb.SMALL.space, seed=0)
  dense = np.asarray(dense)
  top = np.sort(dense.ravel())[::-1][2]  # the 3 best (1%); planted rewards are distinct
  random, rates = check_against_random(nb.SMALL.space, dense, top, BUDGET, STRATEGIES)
  for name, rate in rates.items():
    assert rate > random + 0.2, (name, rate, random)


def test_strategies_beat_random_on_the_table():
  t = table()
  dense = t.dense()  # reward: the mean validation accuracy over the seeds
  top = np.sort(dense.ravel())[::-1][2]  # the 3 best (1% of 256); ties with them count too
  random, rates = check_against_random(t.space, dense, top, BUDGET, STRATEGIES)
  for name, rate in rates.items():
    assert rate > random + 0.1, (name, rate, random)


@pytest.mark.slow
def test_a_regenerated_cell_reproduces_the_shipped_table():
  t = table()
  rows = [int(np.flatnonzero((t.indices == a).all(1))[0]) for a in tabular.QUICK[:2]]
  recipe = dataclasses.replace(t.recipe, seeds=t.recipe.seeds[:1])
  metrics = tabular.train_cells(tabular.QUICK[:2], recipe, tabular.load_splits(recipe),
                                progress=False)
  for k in tabular.METRICS:
    np.testing.assert_allclose(metrics[k][:, 0], t.metrics[k][rows, 0], atol=TOLERANCE[k])


def test_cifar10_variant_loads_its_subsets(tmp_path):
  rng = np.random.default_rng(0)
  np.savez(tmp_path / "train.npz", images=rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8),
           labels=np.arange(30) % 10)
  recipe = tabular.Recipe(**dict(tabular.CIFAR10, num_train=20, num_val=10))
  splits = tabular.load_splits(recipe, data_dir=tmp_path)
  assert splits["train"]["image"].shape == (20, 32, 32, 3)
  assert splits["val"]["image"].shape == (10, 32, 32, 3)
  # The val subset is the rest of the training split, disjoint from the train subset.
  labels = np.concatenate([splits["train"]["label"], splits["val"]["label"]])
  assert sorted(labels.tolist()) == sorted((np.arange(30) % 10).tolist())
  with pytest.raises(ValueError, match="Unknown dataset 'svhn'"):
    tabular.Recipe(dataset="svhn")
  with pytest.raises(SystemExit):
    tabular.main(["--seeds", "0", "--out", str(tmp_path / "t.json")])


TINY = tabular.Recipe(num_train=64, num_val=32, num_steps=4, batch_size=16, loss_window=2,
                      seeds=(0,))


def fake_train_cells(archs, recipe, splits, *, progress=True, on_row=None):
  """train_cells's contract with metrics made from the cell indices (training is not under test
  here; test_a_regenerated_cell_reproduces_the_shipped_table covers it)."""
  del splits, progress
  out = {k: [] for k in tabular.METRICS + ("seconds",)}
  for a in np.asarray(archs).tolist():
    row = {"index": a, "seconds": 1.0 + sum(a),
           **{k: [float(sum(a)) / 10 + s for s in recipe.seeds] for k in tabular.METRICS}}
    for k in out:
      out[k].append(row[k])
    if on_row is not None:
      on_row(row)
  return {k: np.asarray(v, np.float32) for k, v in out.items()}


def test_an_interrupted_table_resumes_from_its_partial_file(tmp_path, monkeypatch):
  trained = []
  monkeypatch.setattr(tabular, "train_cells",
                      lambda archs, *a, **k: trained.append(np.asarray(archs).tolist())
                      or fake_train_cells(archs, *a, **k))
  partial = tmp_path / "t.partial.jsonl"
  archs = tabular.QUICK[:3]
  # A first run "interrupted" after one cell; its row is given a marker value, so the resumed run
  # can only report it if it read the row instead of training the cell again.
  tabular.generate(TINY, archs[:1], partial=partial, progress=False)
  header, row = partial.read_text().splitlines()
  marked = json.loads(row)
  assert marked["index"] == archs[0].tolist() and json.loads(header)["recipe"]["num_steps"] == 4
  marked["val_accuracy"] = [0.125]
  partial.write_text(f"{header}\n{json.dumps(marked)}\n")
  table = tabular.generate(TINY, archs, partial=partial, progress=False)
  assert trained == [archs[:1].tolist(), archs[1:].tolist()]  # the resumed run trained 2 cells
  assert table["val_accuracy"][0] == [0.125]
  assert table["indices"] == archs.tolist()
  assert table["train_loss"][1:] == [[sum(a) / 10] for a in archs[1:].tolist()]
  assert len(partial.read_text().splitlines()) == 1 + 3  # the recipe, then every cell
  assert table["seconds_total"] == sum(1.0 + sum(a) for a in archs.tolist())
  # Everything done: nothing is trained, and the table reads back.
  again = tabular.generate(TINY, archs, partial=partial, progress=False)
  assert len(trained) == 2 and again == table
  out = tmp_path / "t.json"
  out.write_text(json.dumps(table))
  np.testing.assert_array_equal(tabular.read(out).indices, archs)


def test_a_partial_file_of_another_recipe_or_damaged_is_refused_by_name(tmp_path):
  partial = tmp_path / "t.partial.jsonl"
  header = json.dumps({"recipe": dict(dataclasses.asdict(TINY), seeds=[0])})
  row = json.dumps({"index": [0, 0, 0, 0], "seconds": 1.0, "val_accuracy": [0.5],
                    "val_loss": [1.0], "train_loss": [1.0]})
  partial.write_text(f"{header}\n{row}\n")
  assert list(tabular.read_partial(partial, TINY)) == [(0, 0, 0, 0)]
  other = dataclasses.replace(TINY, num_steps=5, seeds=(0, 1))
  with pytest.raises(ValueError, match=r"num_steps: 4 -> 5; seeds: \[0\] -> \[0, 1\]"):
    tabular.read_partial(partial, other)
  # A last row cut short (killed while writing) is dropped from the file; the whole rows stay.
  partial.write_text(f"{header}\n{row}\n{row[:20]}")
  assert list(tabular.read_partial(partial, TINY)) == [(0, 0, 0, 0)]
  assert partial.read_text() == f"{header}\n{row}\n"
  # A damaged row before the end is not guessed at.
  partial.write_text(f"{header}\nnot json\n{row}\n")
  with pytest.raises(ValueError, match="line 2, is not a row"):
    tabular.read_partial(partial, TINY)
  partial.write_text("garbage\n")
  with pytest.raises(ValueError, match="is not a partial table"):
    tabular.read_partial(partial, TINY)
  assert tabular.read_partial(tmp_path / "absent.jsonl", TINY) == {}


def test_the_command_writes_the_table_and_removes_its_partial_file(tmp_path, monkeypatch, capsys):
  from jaxcnn import cli  # pylint: disable=g-import-not-at-top

  monkeypatch.setattr(tabular, "train_cells", fake_train_cells)
  out = tmp_path / "tables" / "quick.json"
  assert cli.main(["search-table", "--quick", "--seeds", "2", "--out", str(out)]) == 0
  t = tabular.read(out)
  np.testing.assert_array_equal(t.indices, tabular.QUICK)
  assert t.metrics["val_accuracy"].shape == (len(tabular.QUICK), 2) and t.recipe.seeds == (0, 1)
  assert not (tmp_path / "tables" / "quick.partial.jsonl").exists()
  assert f"{len(tabular.QUICK)} cells" in capsys.readouterr().out
