"""The initialization study against independent computations: exact symmetry under constant
init, the order of per-layer statistics in a ResNet (their values are tested against jax.grad in
tests/test_diagnostics.py), LSUV / Kraehenbuehl / Fixup at initialization
as their papers state, and a small end-to-end run."""

import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.data import preprocessing, sources
from jaxcnn.models import resnet
from jaxcnn.studies import common, initialization


CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "configs"

KEY = jax.random.key(0, impl="rbg")


def _images(n=32, side=6, seed=0):
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.normal(size=(n, side, side, 1)), jnp.float32)


def _labels(n=32, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, 10, n), jnp.int32)


def _captured(model, variables, x, types):
  """Outputs of every module of ``types`` ({path: array}), via flax's capture_intermediates."""
  _, state = model.apply(variables, x, train=False, mutable=["intermediates"],
                         capture_intermediates=lambda m, _: isinstance(m, types))
  flat = jax.tree_util.tree_flatten_with_path(state["intermediates"])[0]
  return {"/".join(str(k.key) for k in path[:-2]): np.asarray(v) for path, v in flat}


# ----------------------------------------------------------------------------------------------
# (c) Symmetry.


def test_unit_spread_by_hand():
  assert initialization.unit_spread([[1.0, 3.0, 2.0], [0.0, 0.0, 5.0]]) == 5.0
  assert initialization.unit_spread(np.full((4, 3), 0.7)) == 0.0
  with pytest.raises(ValueError, match="at least 2 units"):
    initialization.unit_spread(np.ones((3, 1)))


def test_constant_init_units_stay_equal_random_init_differs():
  source = sources.InMemory({"train": {"image": np.asarray(_images(64, 4)),
                                       "label": np.asarray(_labels(64))}})
  # One population for both inits (as the study runs them): the second reuses its programs.
  pop = initialization.symmetry_population((8, 8), source.max_label + 1, 0.01)
  const = initialization.symmetry_run("constant(value=0.5)", source, widths=(8, 8), num_steps=6,
                                      learning_rate=0.01, batch_size=32, population=pop)
  assert const["act_spread"].shape == (7, 2) and const["loss"].shape == (6,)
  # Equal up to float rounding: the kernel-gradient matmul may sum the units' columns in
  # different orders (a clean CI run saw gradient spreads of 1e-10; the units' weights stayed
  # bit-identical there). Random init spreads them by > 0.1 (below).
  for key in ("act_spread", "kernel_spread", "grad_spread"):
    assert np.max(const[key]) < 1e-7, (key, const[key])
  for name in ("Dense_0", "Dense_1"):
    w = np.asarray(const["params"][name]["kernel"])
    # every unit (column) the same, checked without unit_spread
    np.testing.assert_allclose(w, np.broadcast_to(w[:, :1], w.shape), rtol=0, atol=1e-7)
    assert np.max(np.abs(w - 0.5)) > 0  # and training did move them
  # The output units see different labels, so the classifier's columns do differ.
  head = np.asarray(const["params"]["Dense_2"]["kernel"])
  assert np.max(head.max(1) - head.min(1)) > 0
  rand = initialization.symmetry_run("kaiming_normal", source, widths=(8, 8), num_steps=2,
                                     learning_rate=0.01, batch_size=32, population=pop)
  assert np.all(rand["act_spread"] > 0.1) and np.all(rand["kernel_spread"] > 0.1)
  with pytest.raises(ValueError, match="another network"):
    initialization.symmetry_run("kaiming_normal", source, widths=(8, 4), num_steps=2,
                                learning_rate=0.01, batch_size=32, population=pop)


# ----------------------------------------------------------------------------------------------
# Per-layer statistics: layer order.


def test_network_stats_order_in_a_resnet():
  model, variables = initialization.init_network("residual", "kaiming_normal", KEY, _images(),
                                                 stage_sizes=(1, 1), num_filters=2)
  stats = initialization.network_stats(model, variables, _images(), _labels())
  assert stats["weight"][0] == "stem_conv" and stats["weight"][-1] == "head"
  assert stats["weight"][1:3] == ["stage1_block1/conv1/Conv_0", "stage1_block1/conv2/Conv_0"]
  assert len(stats["grad_norm"]) == 6 and np.all(stats["grad_norm"] > 0)


# ----------------------------------------------------------------------------------------------
# What the papers promise at initialization.


def test_lsuv_gives_unit_std_outputs():
  x = _images(64)
  model, variables = initialization.init_network("plain", "lsuv", KEY, x, stage_sizes=(1,),
                                                 num_filters=4)
  outputs = _captured(model, variables, x, (nn.Conv, nn.Dense))
  assert len(outputs) == 4
  for name, out in outputs.items():
    assert abs(out.std() - 1.0) <= 0.0101, name  # Mishkin & Matas: |Var - 1| < tol, here std


def test_kraehenbuehl_gives_every_unit_mean_zero_std_one():
  x = _images(64)
  model, variables = initialization.init_network("plain", "kraehenbuehl", KEY, x,
                                                 stage_sizes=(1,), num_filters=4)
  for name, out in _captured(model, variables, x, (nn.Conv, nn.Dense)).items():
    units = out.reshape(-1, out.shape[-1])
    np.testing.assert_allclose(units.mean(0), 0.0, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(units.std(0), 1.0, rtol=1e-3, err_msg=name)


def _block_io(model, variables, x):
  """(input, output) of every residual block, recorded with an interceptor."""
  records = []

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if isinstance(context.module, resnet._Block) and context.method_name == "__call__":  # pylint: disable=protected-access
      records.append((np.asarray(args[0]), np.asarray(out), context.module.strides,
                      context.module.features))
    return out

  with nn.intercept_methods(interceptor):
    logits = model.apply(variables, x, train=False)
  return np.asarray(logits), records


def _shortcut(x, strides, features):
  """Zero-padding shortcut (He et al. option A), in NumPy."""
  x = x[:, ::strides, ::strides]
  return np.pad(x, ((0, 0), (0, 0), (0, 0), (0, features - x.shape[-1])))


def test_fixup_blocks_are_their_shortcut_at_init():
  x = _images(8, 8)
  model, variables = initialization.init_network("residual", "fixup", KEY, x,
                                                 stage_sizes=(2, 1), num_filters=4)
  logits, blocks = _block_io(model, variables, x)
  assert np.all(logits == 0.0)  # the classifier starts at zero
  assert [s for _, _, s, _ in blocks] == [1, 1, 2]  # identity blocks, then a downsampling one
  for block_in, block_out, strides, features in blocks:
    # The block input is a ReLU output (>= 0), so relu(shortcut) = shortcut: the branch adds 0.
    np.testing.assert_array_equal(block_out, _shortcut(block_in, strides, features))
  # Without Fixup (He init, no normalization) the branches do change the signal.
  model, variables = initialization.init_network("residual", "kaiming_normal", KEY, x,
                                                 stage_sizes=(2, 1), num_filters=4)
  _, blocks = _block_io(model, variables, x)
  assert all(np.max(np.abs(o - _shortcut(i, s, f))) > 1e-3 for i, o, s, f in blocks)


# ----------------------------------------------------------------------------------------------
# Training: the inits of one network as one population.


def test_an_init_trained_in_the_population_equals_its_one_model_run():
  data = sources.subsets("digits", {"train": 96, "test": 40}, seed=0)
  source = sources.InMemory(data)
  pre = preprocessing.fit("standardize", data["train"]["image"])
  x = pre(jnp.asarray(data["train"]["image"][:32]))
  kw = dict(stage_sizes=(1,), num_filters=4)
  model = initialization.build_model("plain", "kaiming_normal", **kw)
  variables = [initialization.init_network("plain", init, KEY, x, **kw)[1]
               for init in ("normal(stddev=0.01)", "lsuv")]
  train = dict(preprocess=pre, learning_rate=0.02, momentum=0.9, batch_size=32, num_epochs=2)
  both, hist = initialization.train_inits(model, variables, source, together=True, **train)
  one, one_hist = initialization.train_inits(model, variables, source, together=False, **train)
  assert hist[1]["loss"].shape == (6,) and hist[1]["test_accuracy"].shape == (2,)
  for m in range(2):  # model m of the population equals its own one-model run
    for a, b in zip(jax.tree.leaves(both[m]["params"]), jax.tree.leaves(one[m]["params"])):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(hist[m]["loss"], one_hist[m]["loss"], rtol=1e-5)
    np.testing.assert_allclose(hist[m]["test_accuracy"], one_hist[m]["test_accuracy"])
  # Training moved the weights away from the init, and the two inits train differently.
  moved = [np.max(np.abs(np.asarray(a) - np.asarray(b))) for a, b in
           zip(jax.tree.leaves(one[1]["params"]), jax.tree.leaves(variables[1]["params"]))]
  assert max(moved) > 1e-4 and not np.allclose(one_hist[0]["loss"], one_hist[1]["loss"])


# ----------------------------------------------------------------------------------------------
# Names, bad input, and a small end-to-end run.


def test_init_label_and_bad_input():
  assert initialization.init_label("orthogonal(gain=1.4142135623730951)") == "orthogonal(1.41)"
  assert initialization.init_label("normal(stddev=0.01)") == "normal(0.01)"
  assert initialization.init_label("lsuv") == "lsuv"
  with pytest.raises(ValueError, match="residual networks only"):
    initialization.build_model("plain", "fixup")
  with pytest.raises(ValueError, match="Known: plain, residual"):
    initialization.build_model("dense", "kaiming_normal")
  with pytest.raises(ValueError, match="kaiming_normal"):  # the known initializers are listed
    initialization.build_model("plain", "no_such_init")


# -m slow: notebooks/04_initialization.ipynb runs this study's quick setting end to end in the fast suite
# (tests/test_studies_run.py); this checks the report's contents at a smaller one.
@pytest.mark.slow
def test_run_quick_writes_table_and_figures(tmp_path):
  config = common.load_config(CONFIGS / "initialization.py", "quick")
  config.mlp.nonlinearities = ("relu",)
  config.mlp.inits = ("normal(stddev=0.01)", "kaiming_normal")
  config.deep.archs = ("residual",)
  config.deep.inits = ("kaiming_normal", "fixup")
  config.symmetry.num_steps = 3
  results = initialization.run(config, str(tmp_path))
  table = pathlib.Path(results.table).read_text()
  assert "| net | init | act std first |" in table and "| residual | fixup |" in table
  assert "| constant(0.5) | 1 | 0 | 0 | 0 | 0 | 0 |" in table  # units identical throughout
  fixup = results.deep["residual"]["fixup"]["init"]
  assert np.all(fixup["grad_norm"][:-1] == 0.0) and fixup["grad_norm"][-1] > 0  # only the head
  assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(results.figures)
  assert (tmp_path / "results.json").stat().st_size > 0
  for name in results.figures:
    assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
