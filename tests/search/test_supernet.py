"""The shared-weight supernet: a child's path equals the standalone child with the same weights."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn.data import sources
from jaxcnn.search import evaluators, nasbench201 as nb, supernet as sn
from search_checks import fill

SUPER = sn.SuperNet(num_cells=1, channels=8, num_classes=5)
X = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 3))
ARCHS = np.asarray([[3, 3, 4, 1, 3, 1],   # the string example: conv3x3, avg pool, skip
                    [0, 2, 4, 1, 0, 2]],  # none, conv1x1, avg pool, skip
                   np.int32)
# With two random ones: the children evaluated together, by child_logits and SharedWeights alike,
# so that both run the one compiled program of these shapes.
ARCHS4 = np.concatenate([ARCHS, np.asarray(nb.SPACE.sample(jax.random.PRNGKey(5), 2))])


@functools.lru_cache(maxsize=None)
def variables():
  """Random supernet variables filled with NumPy (no init program to compile): kernels
  ``N(0, 1 / fan_in)``, norm scales and running variances near 1, biases and means near 0."""
  shapes = jax.eval_shape(lambda k: SUPER.init(k, X, jnp.zeros(6, jnp.int32), train=False),
                          jax.random.PRNGKey(0))
  return jax.tree.map(jnp.asarray, fill(shapes))


def forward(model, variables, x, *arch):
  """Train-mode logits, gradients of their sum, new batch stats; eval-mode logits."""

  def loss(params):
    out, upd = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, *arch,
                           train=True, mutable=["batch_stats"])
    return (out ** 2).sum(), (out, upd["batch_stats"])

  (_, (out, stats)), grads = jax.value_and_grad(loss, has_aux=True)(variables["params"])
  return out, grads, stats, model.apply(variables, x, *arch, train=False)


SUPER_FORWARD = jax.jit(functools.partial(forward, SUPER))
# Eval-mode logits alone, for the tests that read nothing else: the traced-arch train-mode
# gradient program of SUPER_FORWARD is the suite's largest compile here (~10 s of CPU).
SUPER_LOGITS = jax.jit(lambda v, x, arch: SUPER.apply(v, x, arch, train=False))


def placed(x):
  """``x`` split over the devices as the sources place their batches: the sharding is part of a
  compiled program's key, so SharedWeights's batches run the programs compiled for these."""
  return jax.device_put(jnp.asarray(x), sources.batch_sharding(sources.default_mesh()))


def check_child_variables(archs):
  """child_variables of each arch has the standalone child's tree and shapes."""
  v = variables()
  for arch in archs:
    child = sn.child(SUPER, arch)
    ref = jax.eval_shape(lambda k: child.init(k, X, train=False), jax.random.PRNGKey(0))
    got = sn.child_variables(v, arch)
    assert jax.tree.structure(got) == jax.tree.structure(ref)
    assert jax.tree.map(lambda a: a.shape, got) == jax.tree.map(lambda a: a.shape, ref)


def test_child_variables_have_the_childs_structure():
  assert set(variables()["params"]["cell_0_0"]["edge_1_0"]) == {"nor_conv_1x1", "nor_conv_3x3"}
  check_child_variables(ARCHS)  # all five ops between them, 'none' included


# -m slow: five random children more (their abstract inits trace for ~0.9 s of CPU); ARCHS above
# hold every op, and the bitwise path test below applies PATH_ARCH's child to its child variables.
@pytest.mark.slow
def test_random_childrens_variables_have_the_childs_structure():
  check_child_variables(np.asarray(nb.SPACE.sample(jax.random.PRNGKey(4), 5)))


PATH_ARCH = (0, 2, 4, 1, 3, 2)  # all five ops


@functools.lru_cache(maxsize=None)
def standalone(arch=PATH_ARCH):
  """The standalone child's forward pass with the supernet's weights."""
  child, cv = sn.child(SUPER, arch), sn.child_variables(variables(), arch)
  return jax.jit(functools.partial(forward, child))(cv, X)


def on_path(out, arch=PATH_ARCH):
  """The supernet's outputs restricted to the child's variables."""
  return (out[0], sn.child_variables({"p": out[1]}, arch)["p"],
          sn.child_variables({"s": out[2]}, arch)["s"], out[3])


def check_off_path(grads, stats, arch=PATH_ARCH):
  """The ops off the path get exactly zero gradient and keep their statistics."""
  chosen = dict(zip((f"edge_{j}_{i}" for j, i in nb.EDGES), nb.arch_ops(arch)))
  for cell in ("cell_0_0", "cell_1_0", "cell_2_0"):
    for edge, per_op in grads[cell].items():
      for op in set(per_op) - {chosen[edge]}:
        assert not any(np.asarray(g).any() for g in jax.tree.leaves(per_op[op]))
        jax.tree.map(np.testing.assert_array_equal, stats[cell][edge][op],
                     variables()["batch_stats"][cell][edge][op])


def test_child_path_with_a_constant_arch_is_bitwise_the_child():
  # The switches fold to their branches and the supernet's program is the child's: train-mode
  # logits, gradients and batch statistics and eval-mode logits are bitwise equal.
  arch = jnp.asarray(PATH_ARCH)
  fixed = jax.jit(lambda v, x: forward(SUPER, v, x, arch))(variables(), X)
  jax.tree.map(np.testing.assert_array_equal, on_path(fixed), standalone())
  check_off_path(fixed[1], fixed[2])


# -m slow: the fast suite has a traced child path twice, NAS-Bench-201's (test_vmap_and_map_agree_
# and_compile_once) and NASNet's (tests/search/test_nasnet_supernet.py).
@pytest.mark.slow
def test_child_path_with_a_traced_arch_equals_the_child_to_float_noise():
  # One program for the whole space. XLA cannot fuse a branch's element-wise ops with their
  # neighbours across the conditional, and the other fusion rounds differently (measured: at
  # most ~1e-6 on values of size ~1).
  traced = SUPER_FORWARD(variables(), X, jnp.asarray(PATH_ARCH))
  close = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-5)
  jax.tree.map(close, on_path(traced), standalone())
  check_off_path(traced[1], traced[2])


def test_vmap_and_map_agree_and_compile_once():
  v, archs, x = variables(), ARCHS4, placed(X)
  by_vmap = sn.child_logits(SUPER, v, x, archs, mode="vmap")
  by_map = sn.child_logits(SUPER, v, x, archs, mode="map")
  assert by_vmap.shape == by_map.shape == (4, 4, 5)
  np.testing.assert_allclose(by_vmap, by_map, rtol=1e-5, atol=1e-5)
  for i, arch in enumerate(archs):  # each row is that child's own eval logits
    np.testing.assert_allclose(by_map[i], SUPER_LOGITS(v, x, jnp.asarray(arch)), rtol=1e-5,
                               atol=1e-5)
  sn.child_logits(SUPER, v, x, archs[::-1], mode="map")  # other children: no new compilation
  assert sn._compiled_logits(SUPER, "map")._cache_size() == 1
  assert sn.resolve_mode("auto") == sn.AUTO_MODE["cpu"]


def test_shared_weights_evaluator_is_the_childs_accuracy():
  rng = np.random.default_rng(0)
  images = rng.normal(size=(6, 8, 8, 3)).astype(np.float32)  # two eval batches of 4, padded
  labels = rng.integers(0, 5, 6).astype(np.int32)
  source = sources.InMemory({"train": {"image": images, "label": labels},
                             "val": {"image": images, "label": labels}}, eval_batch_size=4)
  ev = evaluators.SharedWeights(SUPER, variables(), source, mode="map")
  rewards, metrics = ev.evaluate(ARCHS4)
  padded = np.concatenate([images, images[:2]])
  for arch, reward in zip(ARCHS4, rewards):
    logits = np.concatenate([SUPER_LOGITS(variables(), placed(padded[i:i + 4]),
                                          jnp.asarray(arch)) for i in (0, 4)])[:6]
    assert reward == pytest.approx(float((logits.argmax(-1) == labels).mean()))
  np.testing.assert_array_equal(ev(ARCHS4[::-1]), rewards[::-1])  # deterministic
  assert set(ev.last_metrics) == {"accuracy", "loss"} and metrics["loss"].shape == (4,)


@pytest.mark.slow  # about 45 s of CPU: four programs over the supernet compile
def test_one_shot_training_and_shared_weight_evaluation():
  rng = np.random.default_rng(0)
  data = {s: {"image": rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
              "label": rng.integers(0, 5, n).astype(np.int32)} for s, n in [("train", 32),
                                                                            ("val", 12)]}
  source = sources.InMemory(data, eval_batch_size=8)
  v0 = variables()
  trained, history = evaluators.train_supernet(SUPER, optax.sgd(0.1), source, num_steps=3,
                                               batch_size=8, preprocess=lambda x: x / 255.0)
  assert history["train_loss"].shape == (3, 1) and np.isfinite(history["train_loss"]).all()
  assert jax.tree.structure(trained) == jax.tree.structure(v0)
  assert (history["grad_norm"] > 0).all()  # every sampled path trains some weights
  ev = evaluators.SharedWeights(SUPER, trained, source, preprocess=lambda x: x / 255.0,
                                mode="map")
  rewards, metrics = ev.evaluate(ARCHS)
  # Against the child evaluated by hand on all 12 validation images (two padded batches).
  for arch, r in zip(ARCHS, rewards):
    child, cv = sn.child(SUPER, arch), sn.child_variables(trained, arch)
    logits = child.apply(cv, jnp.asarray(data["val"]["image"]) / 255.0, train=False)
    assert r == pytest.approx(float((np.argmax(logits, -1) == data["val"]["label"]).mean()))
  np.testing.assert_array_equal(ev(ARCHS), rewards)  # deterministic
  assert set(ev.last_metrics) == {"accuracy", "loss"}


def test_bad_arch():
  # The space the evaluators validate against: the supernet's, NAS-Bench-201's by default.
  assert sn.arch_space(SUPER) is nb.SPACE and sn.arch_space(object()) is nb.SPACE
  with pytest.raises(ValueError, match="needs an architecture"):
    SUPER.apply(variables(), X, train=False)
  with pytest.raises(ValueError, match="out of range"):
    sn.child_logits(SUPER, variables(), X, np.full((1, 6), 5), mode="map")
  with pytest.raises(ValueError, match="Unknown mode"):
    sn.resolve_mode("pmap")
