"""jaxcnn.nn.conv: values and gradients equal flax.linen.Conv's; the custom gradient is used."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.models import create_model
from jaxcnn.nn import conv
from jaxcnn.nn.layers import Ops

CUSTOM = functools.partial(conv.conv_general_dilated, mode="custom")

CASES = [
    dict(kernel_size=(3, 3)),
    dict(kernel_size=(3, 3), strides=2),
    dict(kernel_size=(3, 2), strides=(2, 1), padding="VALID"),
    dict(kernel_size=(3, 3), kernel_dilation=2),
    dict(kernel_size=(3, 3), feature_group_count=3, use_bias=False),
    dict(kernel_size=(3, 3), feature_group_count=6, strides=2),  # depthwise
    dict(kernel_size=(1, 1), strides=2),
    dict(kernel_size=(3, 3), padding=((1, 2), (0, 1)), strides=2),
    dict(kernel_size=(5, 5), strides=3, kernel_dilation=(1, 2)),
    dict(kernel_size=(7, 7), strides=2, padding=((3, 3), (3, 3))),  # an ImageNet stem
    dict(kernel_size=(3, 3), padding="CIRCULAR"),
]


def _value_and_grads(module, variables, x):
  loss = lambda v, x: jnp.sum(jnp.sin(module.apply(v, x)))  # noqa: E731
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(variables, x)


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_values_and_gradients_equal_flax_conv(case):
  x = jax.random.normal(jax.random.key(0), (3, 11, 10, 6))
  plain, fast = nn.Conv(12, **case), conv.Conv(12, **case, conv_general_dilated=CUSTOM)
  variables = plain.init(jax.random.key(1), x)
  fast_variables = fast.init(jax.random.key(1), x)
  assert jax.tree.structure(variables) == jax.tree.structure(fast_variables)
  jax.tree.map(np.testing.assert_array_equal, variables, fast_variables)  # same init too
  (loss, grads), (fast_loss, fast_grads) = (_value_and_grads(plain, variables, x),
                                            _value_and_grads(fast, variables, x))
  np.testing.assert_allclose(fast_loss, loss, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
               fast_grads, grads)


def _uses_custom_rule(module, x):
  variables = jax.eval_shape(module.init, jax.random.key(0), x)
  jaxpr = jax.make_jaxpr(lambda v: module.apply(v, x))(variables)
  return "custom_jvp_call" in str(jaxpr)


def test_the_custom_gradient_is_used_where_it_applies():
  x = jnp.zeros((2, 8, 8, 3))
  assert jax.default_backend() == "cpu"
  assert _uses_custom_rule(conv.Conv(4, (3, 3)), x)  # auto on CPU
  assert _uses_custom_rule(conv.Conv(4, (3, 3), conv_general_dilated=CUSTOM), x)
  xla = functools.partial(conv.conv_general_dilated, mode="xla")
  assert not _uses_custom_rule(conv.Conv(4, (3, 3), conv_general_dilated=xla), x)
  assert not _uses_custom_rule(nn.Conv(4, (3, 3)), x)
  # Input dilation (a transposed convolution) falls back to XLA's gradient, with equal values.
  kw = dict(features=4, kernel_size=(3, 3), input_dilation=2, padding=((1, 1), (1, 1)))
  dilated = conv.Conv(**kw)
  assert not _uses_custom_rule(dilated, x)
  variables = nn.Conv(**kw).init(jax.random.key(0), x + 1)
  np.testing.assert_array_equal(dilated.apply(variables, x + 1),
                                nn.Conv(**kw).apply(variables, x + 1))
  with pytest.raises(ValueError, match="Unknown conv mode"):
    conv.conv_general_dilated(x, jnp.zeros((3, 3, 3, 4)), (1, 1), "SAME",
                              dimension_numbers=("NHWC", "HWIO", "NHWC"), mode="fast")


def test_nchw_falls_back_to_lax():
  x = jax.random.normal(jax.random.key(0), (2, 3, 8, 8))
  w = jax.random.normal(jax.random.key(1), (4, 3, 3, 3))
  f = lambda fn: jax.grad(lambda w: jnp.sum(fn(x, w, (1, 1), "SAME") ** 2))(w)  # noqa: E731
  np.testing.assert_array_equal(f(CUSTOM), f(jax.lax.conv_general_dilated))


def test_bfloat16_and_vmap_over_models():
  x = jax.random.normal(jax.random.key(0), (4, 9, 9, 8)).astype(jnp.bfloat16)
  plain, fast = nn.Conv(8, (3, 3), strides=2), conv.Conv(8, (3, 3), strides=2)
  stacked = jax.vmap(lambda k: plain.init(k, x))(jax.random.split(jax.random.key(0), 3))
  stacked = jax.tree.map(lambda a: a.astype(jnp.bfloat16), stacked)

  def grads(module):
    loss = lambda v: jnp.sum(module.apply(v, x).astype(jnp.float32) ** 2)  # noqa: E731
    return jax.jit(jax.vmap(jax.grad(loss)))(stacked)

  got, want = grads(fast), grads(plain)
  assert got["params"]["kernel"].dtype == jnp.bfloat16
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a, np.float32),
                                                       np.asarray(b, np.float32), rtol=2e-2,
                                                       atol=2e-2), got, want)


def test_swapped_into_a_model_gives_the_same_training_gradients():
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
  labels = jnp.arange(4) % 10
  plain, fast = (create_model("simple_cnn_small", num_classes=10, conv=nn.Conv),
                 create_model("simple_cnn_small", num_classes=10))  # the default: conv.Conv
  init = lambda model: jax.jit(functools.partial(model.init, train=False))  # noqa: E731
  variables = init(plain)(jax.random.key(1), x)
  jax.tree.map(np.testing.assert_array_equal, variables, init(fast)(jax.random.key(1), x))

  def grads(model):
    def loss(params):
      logits, _ = model.apply({**variables, "params": params}, x, train=True,
                              mutable=["batch_stats"])
      return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels])
    return jax.jit(jax.grad(loss))(variables["params"])

  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               grads(fast), grads(plain))


def test_every_model_uses_it_by_default():
  assert Ops.create().conv.func is conv.Conv  # a partial binding kernel_init
  x = jnp.zeros((2, 8, 8, 1))
  model = create_model("simple_cnn_small", num_classes=10)
  variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
  jaxpr = jax.make_jaxpr(lambda v: model.apply(v, x, train=False))(variables)
  assert "custom_jvp_call" in str(jaxpr)


def _conv_labels(fn, *args):
  hlo = jax.jit(fn).lower(*args).compile().as_text()
  return [line.split("dim_labels=")[1].split(",")[0] for line in hlo.splitlines()
          if " convolution(" in line]


@pytest.mark.parametrize("strides", [1, 2])
def test_gradients_inside_a_loop_are_plain_nhwc_convolutions(strides):
  """Inside lax.scan, XLA:CPU keeps a convolution's dimension labels as the transpose rule wrote
  them; only ``b01f_01io->b01f`` runs on its library kernels (the others ran 5-20x slower)."""
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 6))
  variables = nn.Conv(6, (3, 3), strides=strides).init(jax.random.key(1), x)

  def scanned(module):
    def grads(v, x):
      return jax.grad(lambda v, x: jnp.sum(module.apply(v, x) ** 2), argnums=(0, 1))(v, x)
    return lambda v, x: jax.lax.scan(lambda c, _: (c, grads(v, x + c)), 0.0 * x, None,
                                     length=2)[1]

  labels = _conv_labels(scanned(conv.Conv(6, (3, 3), strides=strides)), variables, x)
  assert len(labels) == 3 and set(labels) == {"b01f_01io->b01f"}, labels
  xla = _conv_labels(scanned(nn.Conv(6, (3, 3), strides=strides)), variables, x)
  assert set(xla) != {"b01f_01io->b01f"}, xla  # what the custom gradients avoid


def test_forward_mode_and_hessian_vector_products_equal_flax_conv():
  """A custom_jvp (not a custom_vjp): jax.jvp, jax.hessian, jvp-of-grad work through every model
  (DARTS's second-order term needs them), equal to flax.linen.Conv's."""
  x = jax.random.normal(jax.random.key(0), (2, 9, 9, 6))
  for case in (dict(strides=2), dict(feature_group_count=3)):
    plain, fast = nn.Conv(6, (3, 3), **case), conv.Conv(6, (3, 3), **case)
    v = plain.init(jax.random.key(1), x)
    tangent = jax.tree.map(lambda a: 0.1 * jnp.ones_like(a), v)

    def hvp(module):
      grad = jax.grad(lambda v: jnp.sum(jnp.sin(module.apply(v, x))))
      return jax.jvp(grad, (v,), (tangent,))[1]

    np.testing.assert_allclose(jax.jvp(lambda v: fast.apply(v, x), (v,), (tangent,))[1],
                               jax.jvp(lambda v: plain.apply(v, x), (v,), (tangent,))[1],
                               rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
                 hvp(fast), hvp(plain))


DEPTHWISE = [dict(kernel_size=(3, 3)), dict(kernel_size=(3, 3), strides=2),
             dict(kernel_size=(3, 3), strides=2, padding=((2, 1), (1, 2))),
             dict(kernel_size=(3, 3), kernel_dilation=2), dict(kernel_size=(3, 1), padding="VALID"),
             dict(kernel_size=(3, 3), strides=(1, 2), use_bias=True),
             dict(kernel_size=(5, 5), strides=2)]  # 25 taps: XLA's convolution


@pytest.mark.parametrize("case", DEPTHWISE, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_depthwise_as_slices_equals_flax_conv(case):
  """One filter per channel, at most DEPTHWISE_MAX_TAPS taps: a sum of strided slices (no
  convolution op), equal to XLA's convolution."""
  case = {"use_bias": False, **case}
  x = jax.random.normal(jax.random.key(0), (3, 11, 10, 6))
  plain, fast = nn.Conv(6, feature_group_count=6, **case), conv.Conv(6, feature_group_count=6,
                                                                    **case)
  variables = plain.init(jax.random.key(1), x)
  jaxpr = str(jax.make_jaxpr(lambda v: fast.apply(v, x))(variables))
  taps = case["kernel_size"][0] * case["kernel_size"][1]
  assert ("conv_general_dilated" in jaxpr) == (taps > conv.DEPTHWISE_MAX_TAPS)
  (loss, grads), (fast_loss, fast_grads) = (_value_and_grads(plain, variables, x),
                                            _value_and_grads(fast, variables, x))
  np.testing.assert_allclose(fast_loss, loss, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
               fast_grads, grads)


def test_depthwise_bfloat16_accumulates_in_float32():
  x = jax.random.normal(jax.random.key(0), (2, 9, 9, 8))
  w = jax.random.normal(jax.random.key(1), (3, 3, 1, 8))
  args = ((1, 1), "SAME")
  kw = dict(dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=8)
  exact = jax.lax.conv_general_dilated(x, w, *args, **kw)  # float32 reference
  got = conv.conv_general_dilated(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), *args, **kw)
  assert got.dtype == jnp.bfloat16
  ref = jax.lax.conv_general_dilated(x.astype(jnp.bfloat16).astype(jnp.float32),
                                     w.astype(jnp.bfloat16).astype(jnp.float32), *args, **kw)
  # One bfloat16 rounding of the float32 sum (relative 2^-8), not 9 of them.
  np.testing.assert_allclose(np.asarray(got, np.float32), ref, rtol=2 ** -8, atol=1e-2)
  assert np.abs(np.asarray(got, np.float32) - exact).max() < 0.2


def test_compiler_options_on_cpu_and_their_fallback(monkeypatch):
  assert conv.compiler_options() == {"xla_cpu_experimental_ynn_fusion_type":
                                     "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
  x = jnp.ones((2, 6, 6, 3))
  w = jnp.ones((3, 3, 3, 4))
  f = lambda x, w: jax.lax.conv_general_dilated(  # noqa: E731
      x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_array_equal(conv.jit(f)(x, w), f(x, w))
  # A jaxlib without the option: no options rather than a compile error.
  monkeypatch.setattr(conv, "_CPU_OPTIONS", {"xla_no_such_option_for_this_test": "1"})
  conv.compiler_options.cache_clear()
  try:
    assert conv.compiler_options() is None
  finally:
    monkeypatch.undo()
    conv.compiler_options.cache_clear()
  assert conv.compiler_options() is not None


def test_weight_gradient_transposes_the_activation_as_computed():
  """The activation's transpose for the weight gradient is a conditional's branch, so XLA:CPU
  cannot fuse the element-wise chain that produced the activation into it; with XLA's own
  gradient (flax.linen.Conv) there is no conditional. Gradients equal flax's (to float32
  rounding)."""
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 6))
  variables = nn.Conv(6, (3, 3)).init(jax.random.key(1), x)

  def grad_fn(module):
    loss = lambda v, x: jnp.sum(module.apply(v, jax.nn.relu(2.0 * x + 1.0)) ** 2)  # noqa: E731
    return jax.jit(jax.grad(loss))

  ours, xla = grad_fn(conv.Conv(6, (3, 3))), grad_fn(nn.Conv(6, (3, 3)))
  assert " conditional(" in ours.lower(variables, x).compile().as_text()
  assert " conditional(" not in xla.lower(variables, x).compile().as_text()
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
               ours(variables, x), xla(variables, x))


def test_empty_batch_has_zero_weight_gradients():
  module = conv.Conv(4, (3, 3))
  variables = module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
  grads = jax.grad(lambda v: jnp.sum(module.apply(v, jnp.zeros((0, 8, 8, 3)))))(variables)
  assert all(not np.any(g) for g in jax.tree.leaves(grads))
