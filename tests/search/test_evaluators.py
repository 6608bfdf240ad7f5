"""Evaluators: lookup tables, trained candidates (population trainer), and a search run on them."""

import jax
import numpy as np
import optax
import pytest

from jaxcnn import search
from jaxcnn.data import sources
from jaxcnn.models import create_model
from jaxcnn.search import evaluators, nasbench201 as nb

SPACE = search.Space({"a": (0, 1, 2), "b": (0, 1)})


def test_lookup_from_array_mapping_and_callable():
  table = np.arange(6, dtype=np.float32).reshape(3, 2)
  archs = np.asarray([[2, 1], [0, 0], [1, 1]])
  rewards, metrics = evaluators.Lookup(table).evaluate(archs)
  np.testing.assert_array_equal(rewards, [5, 0, 3])
  mapping = {(int(i), int(j)): {"accuracy": table[i, j] / 10, "macs": 1.0 + i}
             for i in range(3) for j in range(2)}
  ev = evaluators.Lookup(mapping)
  np.testing.assert_allclose(ev(archs), [0.5, 0.0, 0.3])
  np.testing.assert_array_equal(ev.last_metrics["macs"], [3, 1, 2])
  strings = evaluators.Lookup({nb.to_string(["none"] * 6): 0.1},
                              key=lambda a: nb.to_string(nb.arch_ops(a)))
  assert strings(np.zeros((2, 6), np.int32)).tolist() == pytest.approx([0.1, 0.1])
  with pytest.raises(KeyError, match="not in the lookup table"):
    strings(np.ones((1, 6), np.int32))
  np.testing.assert_array_equal(evaluators.Lookup(lambda a: a.sum())(archs), [3, 0, 2])
  with pytest.raises(ValueError, match=r"shape \[n, L\]"):
    evaluators.Lookup(table)(np.asarray([1, 0]))


def test_lookup_drives_a_search():
  table = np.random.default_rng(0).random((3, 2)).astype(np.float32)
  strategy = search.strategies.get("random")
  result = search.run(SPACE, strategy, evaluators.Lookup(table), budget=12,
                      key=jax.random.PRNGKey(0), batch_size=4, progress=False)
  np.testing.assert_array_equal(result.rewards, table[tuple(result.archs.T)])


def _source(n_train=48, n_val=16, seed=0):
  rng = np.random.default_rng(seed)
  data = {s: {"image": rng.integers(0, 17, (n, 8, 8, 1), dtype=np.uint8),
              "label": rng.integers(0, 3, n).astype(np.int32)}
          for s, n in [("train", n_train), ("val", n_val)]}
  return sources.InMemory(data, eval_batch_size=16)


def _build(arch):
  """A tiny space over the zoo's SimpleCNN: arch = (width index, unused choice)."""
  width = (4, 8)[int(arch[0]) % 2]
  return create_model("simple_cnn_small", num_classes=3, stage_features=(width,))


def test_trained_is_deterministic_groups_duplicates_and_matches_a_population():
  source = _source()
  ev = evaluators.Trained(_build, source, optax.sgd(0.1), num_steps=3, batch_size=8,
                          seeds=(0, 1), preprocess=lambda x: x / 16.0)
  archs = np.asarray([[0, 0], [1, 0], [0, 0], [2, 1]])  # [2, 1] builds the same model as [0, 0]
  rewards, metrics = ev.evaluate(archs)
  assert ev.num_trained == 2  # two distinct models, each one population of two seeds
  assert rewards[0] == rewards[2] == rewards[3]
  assert set(metrics) == {"accuracy", "loss", "train_loss", "seconds"}
  np.testing.assert_array_equal(ev(archs[::-1]), rewards[::-1])
  assert ev.num_trained == 2  # cached
  # Deterministic: the reward is the mean final validation accuracy of the same population
  # trained afresh, directly.
  from jaxcnn.train.population import Population
  pop = Population(_build(archs[1]), optax.sgd(0.1), num_models=2, preprocess=lambda x: x / 16.0)
  state, keys = pop.init([0, 1], source.input_shape)
  _, history = pop.train(state, keys, source, num_steps=3, batch_size=8, eval_splits=["val"])
  assert rewards[1] == pytest.approx(history["val_accuracy"][-1].mean())


def test_trained_bad_input():
  with pytest.raises(ValueError, match="num_steps >= 1"):
    evaluators.Trained(_build, _source(), optax.sgd(0.1), num_steps=0, batch_size=8)
