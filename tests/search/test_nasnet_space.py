"""The NASNet search space: its choices and size, the concat choices, encode/decode, NASNet-A as
an architecture of it (nasnet_a_mobile's parameter count), random architectures under jit,
errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.models import count_params, create_model, model_info
from jaxcnn.models.nasnet import NASNET_A_NORMAL, NASNET_A_REDUCTION, OPS, Genotype
from jaxcnn.search import nasnet as ns

TINY = {"num_cells": 1, "penultimate_filters": 48, "stem_features": 4, "filter_multiplier": 1,
        "num_classes": 3}


def test_space_choices_and_size():
  assert len(ns.SPACE) == 2 * 5 * 4 + 6 + 4 and len(OPS) == 13
  assert ns.SPACE.names[:5] == ("normal_0_input_1", "normal_0_input_2", "normal_0_op_1",
                                "normal_0_op_2", "normal_1_input_1")
  assert ns.SPACE.names[20:27] == ("normal_concat_h", "normal_concat_p", "normal_concat_0",
                                   "normal_concat_1", "normal_concat_2", "normal_concat_3",
                                   "reduction_0_input_1")
  assert ns.SPACE.options("reduction_3_input_2") == (0, 1, 2, 3, 4)  # h, p, blocks 0..2
  # Per cell, block b has (2 + b)^2 input pairs and 13^2 op pairs: (2 * 3 * 4 * 5 * 6)^2 * 13^10;
  # then 6 (normal) and 4 (reduction) binary concat choices.
  assert ns.SPACE.size == (math.factorial(6) ** 2 * 13 ** 10) ** 2 * 2 ** 10


def test_nasnet_a_round_trip_and_builds_nasnet_a_mobile():
  arch = ns.encode((NASNET_A_NORMAL, NASNET_A_REDUCTION))
  assert arch.shape == (50,) and arch.dtype == np.int32
  assert ns.decode(arch) == (NASNET_A_NORMAL, NASNET_A_REDUCTION)
  choice = ns.SPACE.decode(arch)
  assert [choice[f"normal_0_{f}"] for f in ns.FIELDS] == [0, 1, "sep_conv_5x5", "sep_conv_3x3"]
  # Read but concatenated: p in the normal cell, block 1 in the reduction cell (Figure 4); the
  # unread blocks' concat choices are True too (encode's convention), the other ones False.
  assert 1 not in ns.unread_blocks(NASNET_A_NORMAL.blocks)
  assert 3 not in ns.unread_blocks(NASNET_A_REDUCTION.blocks)
  assert [k for k, v in choice.items() if "concat" in k and v] == [
      "normal_concat_p", "normal_concat_0", "normal_concat_1", "normal_concat_2",
      "normal_concat_3", "reduction_concat_1", "reduction_concat_2", "reduction_concat_3"]
  # The zoo's nasnet_a_mobile, field for field: its variable tree and parameter count (Keras
  # NASNetMobile's 5,289,978) are checked in tests/models/test_nasnet.py; the count of this
  # build is traced again in the slow test below (~3 s of CPU).
  assert ns.build(arch) == create_model("nasnet_a_mobile")
  assert model_info("nasnet").family == "nasnet"


@pytest.mark.slow
def test_nasnet_a_builds_nasnet_a_mobiles_parameter_count():
  model = ns.build(ns.encode((NASNET_A_NORMAL, NASNET_A_REDUCTION)))
  assert count_params(model, (1, 224, 224, 3)) == 5_289_978  # Keras NASNetMobile, as the zoo's


def test_unread_blocks_are_concatenated():
  # A chain (block b reads block b - 1 and h): only the last block is unread.
  chain = tuple((("identity", 1 + b), ("identity", 0)) for b in range(5))
  assert ns.unread_blocks(chain) == (6,)
  # Blocks reading only the cell inputs are all unread.
  flat = ((("identity", 0), ("identity", 1)),) * 5
  assert ns.unread_blocks(flat) == (2, 3, 4, 5, 6)
  choice = {name: options[0] for name, options in ns.SPACE.choices.items()}  # concat all False
  choice.update({f"normal_{b}_input_1": 1 + b for b in range(5)})
  normal, reduction = ns.decode(ns.SPACE.encode(choice))
  assert normal.concat == (6,) and reduction.concat == (2, 3, 4, 5, 6)
  assert ns.decode(ns.SPACE.encode({**choice, "normal_concat_h": True}))[0].concat == (0, 6)


def test_random_architectures_round_trip():
  names = ns.SPACE.names
  for arch in np.asarray(ns.SPACE.sample(jax.random.key(0), 50)):
    genotypes = ns.decode(arch)
    assert all(i < 2 + b for g in genotypes for b, pair in enumerate(g.blocks) for _, i in pair)
    again = ns.encode(genotypes)
    assert ns.decode(again) == genotypes
    # encode differs only in concat choices of unread blocks (concatenated anyway), set True.
    for j in np.flatnonzero(again != arch):
      cell, _, label = names[j].split("_")
      state = ns.CONCAT[cell][label]
      assert state in ns.unread_blocks(genotypes[ns.CELLS.index(cell)].blocks) and again[j] == 1


def _random_variables(model, x):
  """Variables of the model's shapes (jax.eval_shape; no jitted init, which costs ~5x the
  forward's compile): kernels N(0, 1 / fan_in), norm scales and variances 1, the rest 0."""
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    name = str(path[-1].key)
    if name in ("scale", "var"):
      return jnp.ones(leaf.shape)
    if name != "kernel":
      return jnp.zeros(leaf.shape)
    return jnp.asarray(rng.standard_normal(leaf.shape) / math.sqrt(math.prod(leaf.shape[:-1])),
                       jnp.float32)

  abstract = jax.eval_shape(lambda k: model.init(k, x, train=False), jax.random.key(0))
  return jax.tree_util.tree_map_with_path(fill, abstract)


def _check_runs_under_jit(arch, *, train: bool):
  x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 32, 32, 3), dtype=np.float32))
  model = ns.build(arch, **TINY)
  variables = _random_variables(model, x)
  if not train:
    y = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    assert y.shape == (2, 3) and bool(jnp.isfinite(y).all())
    return

  def loss(params):
    y, _ = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"],
                       rngs={"dropout": jax.random.key(0)})
    return jnp.mean(y ** 2)

  value, grads = jax.jit(jax.value_and_grad(loss))(variables["params"])
  assert bool(jnp.isfinite(value)) and all(bool(jnp.isfinite(g).all())
                                           for g in jax.tree.leaves(grads))


def test_random_architecture_builds_and_runs_under_jit():
  # One in the fast suite: a tiny NASNet's forward compiles in ~5 s on one core.
  (arch,) = np.asarray(ns.SPACE.sample(jax.random.key(1), 1))
  _check_runs_under_jit(arch, train=False)


@pytest.mark.slow
def test_more_random_architectures_train_under_jit():
  for arch in np.asarray(ns.SPACE.sample(jax.random.key(2), 4)):
    _check_runs_under_jit(arch, train=True)


def test_bad_genotypes_raise():
  with pytest.raises(ValueError, match="Unknown NASNet cell op 'conv_5x5'"):
    ns.encode((NASNET_A_NORMAL._replace(blocks=((("conv_5x5", 0), ("identity", 1)),) * 5),
               NASNET_A_REDUCTION))
  future = NASNET_A_REDUCTION.blocks[:2] + ((("identity", 5), ("identity", 0)),) + \
      NASNET_A_REDUCTION.blocks[3:]
  with pytest.raises(ValueError, match="Block 2 reads state 5"):
    ns.encode((NASNET_A_NORMAL, NASNET_A_REDUCTION._replace(blocks=future)))
  with pytest.raises(ValueError, match="neither reads nor concatenates state 4"):
    ns.encode((NASNET_A_NORMAL._replace(concat=(1, 2, 3, 5, 6)), NASNET_A_REDUCTION))
  with pytest.raises(ValueError, match="has 1 blocks; the space's have 5"):
    ns.encode((Genotype(((("identity", 0), ("identity", 1)),), (1, 2)), NASNET_A_REDUCTION))
  with pytest.raises(ValueError, match="out of range"):
    ns.decode(np.full(50, 13))
