"""The NASNet supernet: op subsets, a child's path equals the standalone child with the same
weights, one program for every architecture, ENAS over the NASNet space, bad architectures."""

import functools
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn import search
from jaxcnn.data import sources
from jaxcnn.models.nasnet import NASNET_A_NORMAL, NASNET_A_REDUCTION, OPS
from jaxcnn.search import enas, evaluators, nasnet as ns, supernet as sn
from jaxcnn.search.run import HISTORY_FILE, STATE_FILE
from search_checks import fill

# The smallest skeleton (five cells, 2 filters in the first, 8x8 inputs) over two cheap ops,
# whose weights are those of a factorized reduction (identity at stride 2) and of a 1x1
# convolution on the stem's 4 channels; besides them, each cell's Adjust and 1x1 convolution
# and the classifier read the zeroed states. Compiles dominate: a program over this supernet
# takes ~7 s of CPU. The slow tests add weighted ops and two cells per stage.
CELL_OPS = ("identity", "avg_pool_3x3")
SUB = ns.Subspace(CELL_OPS)
SUPER = ns.SuperNet(num_cells=1, penultimate_filters=48, stem_features=4, num_classes=10,
                    cell_ops=CELL_OPS)
# Two normal cells per stage: the second reads a cell's output at its size and filters (which
# the child passes as is when it holds one state); separable and factorized convolutions.
BIG = ns.SuperNet(num_cells=2, penultimate_filters=48, stem_features=4, num_classes=10,
                  cell_ops=("identity", "sep_conv_3x3", "conv_1x3_3x1"))
X = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 1))


@functools.lru_cache(maxsize=None)
def variables(model=SUPER):
  """Random supernet variables filled with NumPy (no init program to compile): kernels
  ``N(0, 1 / fan_in)``, norm scales and running variances near 1, biases and means near 0."""
  shapes = jax.eval_shape(lambda k: model.init(k, X, train=False), jax.random.PRNGKey(0))
  return jax.tree.map(jnp.asarray, fill(shapes))


def _archs(seed, n, sub=SUB):
  """``n`` random architectures of ``sub``, in SPACE's indices, then a chain (every block 0..3
  read, no concat choice: each cell outputs block 4 alone)."""
  archs = sub.to_full(np.asarray(sub.space.sample(jax.random.PRNGKey(seed), n)))
  chain = archs[0].copy()
  for cell in ns.CELLS:
    for b in range(ns.NUM_BLOCKS):
      chain[ns.SPACE.names.index(f"{cell}_{b}_input_1")] = 1 + b  # block b reads block b - 1
    for label in ns.CONCAT[cell]:
      chain[ns.SPACE.names.index(f"{cell}_concat_{label}")] = 0
  return np.concatenate([archs, chain[None]])


def test_subspace_maps_ops_and_keeps_the_rest():
  sub = ns.Subspace(ns.ENAS_OPS)
  assert ns.ENAS_OPS == ("identity", "sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3",
                         "max_pool_3x3")  # Pham et al. 2018, Section 2.3
  assert len(sub.space) == 50 and sub.space.options("reduction_4_op_2") == ns.ENAS_OPS
  local = np.asarray(sub.space.sample(jax.random.PRNGKey(0), 20))
  full = sub.to_full(local)
  for a, f in zip(local, full):  # the same choices by name, ops translated
    assert sub.space.decode(a) == ns.SPACE.decode(f)
  np.testing.assert_array_equal(sub.from_full(full), local)
  space = ns.SuperNet(cell_ops=ns.ENAS_OPS).space
  assert space != ns.SPACE and ns.SuperNet().space is ns.SPACE and space.names == ns.SPACE.names
  np.testing.assert_array_equal(space.validate(full), full)
  nasnet_a = ns.encode((NASNET_A_NORMAL, NASNET_A_REDUCTION))  # has sep_conv_7x7
  with pytest.raises(ValueError, match="Op 'sep_conv_7x7' of choice 'reduction_0_op_2' is "
                                       "outside the supernet's ops"):
    space.validate(nasnet_a)
  with pytest.raises(ValueError, match="Unknown NASNet cell op 'conv_5x5'"):
    ns.Subspace(("identity", "conv_5x5"))
  with pytest.raises(ValueError, match="lists an op twice"):
    ns.Subspace(("identity", "identity"))


def test_child_variables_have_the_childs_structure():
  v = variables()
  # Weights: identity at stride 2 (reduction cells' inputs), both ops on the stem's output.
  assert set(v["params"]["cell0"]["block0_1"]) == {"identity_on_stem", "avg_pool_3x3_on_stem"}
  assert set(v["params"]["reduction1"]["block0_1"]) == {"identity"}
  assert "block0_1" not in v["params"]["cell1"]
  for arch in _archs(4, 2):
    child = ns.child(SUPER, arch)
    ref = jax.eval_shape(lambda k, c=child: c.init(k, X, train=False), jax.random.PRNGKey(0))
    got = ns.child_variables(SUPER, v, arch)
    assert jax.tree.structure(got) == jax.tree.structure(ref)
    assert jax.tree.map(lambda a: a.shape, got) == jax.tree.map(lambda a: a.shape, ref)


def test_child_path_equals_the_child_and_one_program_serves_every_arch():
  # Eval mode (the rewards): each child's logits through the supernet, one compiled program for
  # all of them, against the standalone child with the weights read out. Not bitwise: the next
  # cells' 1x1 convolutions also sum the zeroed states (see ns.SuperNet).
  archs = _archs(0, 2)
  logits = sn.child_logits(SUPER, variables(), X, archs, mode="map")
  sn.child_logits(SUPER, variables(), X, archs[::-1], mode="map")
  assert sn._compiled_logits(SUPER, "map")._cache_size() == 1
  for arch, got in zip(archs, logits):
    child, cv = ns.child(SUPER, arch), ns.child_variables(SUPER, variables(), arch)
    want = child.apply(cv, X, train=False)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert not np.allclose(logits[0], logits[1]) and not np.allclose(logits[1], logits[2])


def _forward(model, variables, x, *arch):
  """Train-mode logits, gradients of their squared sum and new batch stats."""

  def loss(params):
    out, upd = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, *arch,
                           train=True, mutable=["batch_stats"])
    return (out ** 2).sum(), (out, upd["batch_stats"])

  (_, (out, stats)), grads = jax.value_and_grad(loss, has_aux=True)(variables["params"])
  return out, grads, stats


def _close(got, want):
  """Equal to float noise on the scale of the leaf (gradients through train-mode norms reach
  ~10 here, and differ by ~2e-5)."""
  scale = max(1.0, float(np.abs(want).max()))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.slow  # the supernet's gradient program and one per child compile: minutes of CPU
def test_child_path_in_training_equals_the_child():
  # Train mode: logits, the gradients of the child's weights and its new batch statistics;
  # every other weight of the supernet gets a zero gradient.
  step = jax.jit(functools.partial(_forward, BIG))
  v = variables(BIG)
  for arch in _archs(1, 2, ns.Subspace(BIG.cell_ops)):
    out, grads, stats = step(v, X, jnp.asarray(arch))
    child, cv = ns.child(BIG, arch), ns.child_variables(BIG, v, arch)
    ref = jax.eval_shape(lambda k, c=child: c.init(k, X, train=False), jax.random.PRNGKey(0))
    assert jax.tree.map(lambda a: a.shape, cv) == jax.tree.map(lambda a: a.shape, ref)
    want = jax.jit(functools.partial(_forward, child))(cv, X)
    got = (out, ns.child_variables(BIG, {"p": grads}, arch)["p"],
           ns.child_variables(BIG, {"s": stats}, arch)["s"])
    jax.tree.map(_close, got, want)
    total = sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads))
    on_path = sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(got[1]))
    assert total == pytest.approx(on_path, rel=1e-5)
  assert step._cache_size() == 1


def test_bad_archs_raise():
  with pytest.raises(ValueError, match=r"arch must be int32 \[50\].*\(49,\)"):
    SUPER.apply({}, X, jnp.zeros(49, jnp.int32), train=False)
  outside = ns.SPACE.encode({**ns.SPACE.decode(_archs(0, 1)[0]), "normal_2_op_1": "conv_3x3"})
  with pytest.raises(ValueError, match="Op 'conv_3x3' of choice 'normal_2_op_1' is outside"):
    SUPER.apply({}, X, outside, train=False)
  with pytest.raises(ValueError, match="outside the supernet's ops: identity, avg_pool_3x3"):
    sn.child_logits(SUPER, variables(), X, np.asarray(outside)[None], mode="map")
  with pytest.raises(ValueError, match="needs an architecture"):
    SUPER.apply({}, X, train=False)
  with pytest.raises(ValueError, match="An architecture has shape"):
    ns.child_variables(SUPER, variables(), np.zeros(6, np.int32))
  # A subspace with ops the supernet does not build: refused before any training.
  ev = enas.SharedTraining(SUPER, TX, _source(), train_steps=1, batch_size=16,
                           subspace=ns.Subspace(OPS), variables=variables())
  nasnet_a = ns.encode((NASNET_A_NORMAL, NASNET_A_REDUCTION))
  with pytest.raises(ValueError, match="Op 'sep_conv_5x5' of choice 'normal_0_op_1' is outside"):
    ev.evaluate(ns.Subspace(OPS).from_full(nasnet_a)[None])
  assert int(ev.state.step) == 0


# ----------------------------------------------------------------------------------------------
# ENAS over the subspace, on the digits.

STRATEGY = enas.ENAS(hidden=8, learning_rate=0.05)
TX = optax.sgd(0.05, momentum=0.9)
NUM = 2  # architectures per ask


def _scale(x):
  return x / 16.0


@functools.lru_cache(maxsize=None)
def _source():
  return sources.InMemory(sources.subsets("digits", {"train": 64, "val": 32}, seed=0),
                          eval_batch_size=32)


def _trainer():
  return enas.SharedTraining(SUPER, TX, _source(), train_steps=2, batch_size=16, subspace=SUB,
                             variables=variables(), preprocess=_scale, mode="map")


def _flat(result, ev):
  return (result.archs, result.rewards, jax.tree.leaves(result.state), jax.tree.leaves(ev.state))


def _equal(a, b):
  for x, y in zip(a, b, strict=True):
    jax.tree.map(np.testing.assert_array_equal, x, y)


@pytest.mark.slow  # the supernet's train step and scoring compile: ~1 min of CPU
def test_enas_search_over_the_nasnet_subspace_is_deterministic_and_resumes(tmp_path):
  assert search.strategies.get("enas") == enas.ENAS()
  run = functools.partial(enas.search, SUB.space, STRATEGY, batch_size=NUM, progress=False)
  ev = _trainer()
  whole = _flat(run(ev, budget=2 * NUM, key=jax.random.PRNGKey(0)), ev)
  assert int(ev.state.step) == 4 and np.isfinite(whole[1]).all()
  # The last rewards: SharedWeights' accuracies with the final weights, on the full archs.
  ref, _ = evaluators.SharedWeights(SUPER, ev.variables, _source(), preprocess=_scale,
                                    mode="map").evaluate(SUB.to_full(whole[0][-NUM:]))
  np.testing.assert_array_equal(whole[1][-NUM:], ref)
  ev = _trainer()
  _equal(whole, _flat(run(ev, budget=2 * NUM, key=jax.random.PRNGKey(0)), ev))
  # Stopped after 1 of 2 steps, resumed with fresh objects.
  work = tmp_path / "run"
  run(_trainer(), budget=NUM, key=jax.random.PRNGKey(0), workdir=work)
  ev = _trainer()
  result = run(ev, budget=2 * NUM, key=jax.random.PRNGKey(0), workdir=work)
  _equal(whole, _flat(result, ev))
  assert (work / STATE_FILE).exists() and (work / HISTORY_FILE).exists()
  best = enas.final(STRATEGY, result.state, ev, jax.random.PRNGKey(3), num_samples=NUM - 1,
                    top_k=2)
  assert best.archs.shape[1] == 50 and best.rewards[0] >= best.greedy_reward
  assert enas._train_step(SUPER, TX, _scale)._cache_size() == 1
  shutil.rmtree(work)
