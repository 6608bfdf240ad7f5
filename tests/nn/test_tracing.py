"""jaxcnn.nn.tracing against flax's capture_intermediates and hand-computed gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.nn import activations, tracing


class Block(nn.Module):
  """Dense -> relu, as a submodule: its calls nest inside the parent's."""

  @nn.compact
  def __call__(self, x):
    return activations.Activation("relu")(nn.Dense(3)(x))


class Net(nn.Module):
  @nn.compact
  def __call__(self, x, scale=1.0):
    return nn.Dense(2)(Block()(x) * scale)


@pytest.fixture(scope="module")
def net():
  x = jax.random.normal(jax.random.key(0), (5, 4))
  return Net(), Net().init(jax.random.key(1), x), x


def test_records_paths_outputs_inputs_and_both_orders(net):
  model, variables, x = net
  with tracing.trace() as calls:
    y = model.apply(variables, x, scale=2.0)
  # Return order: a module after the modules it calls; index: call order.
  assert [c.name for c in calls] == ["Block_0/Dense_0", "Block_0/Activation_0", "Block_0",
                                     "Dense_0", ""]
  assert [c.index for c in calls] == [2, 3, 1, 4, 0]
  assert calls[-1].path == () and calls[-1].kwargs == {"scale": 2.0}
  np.testing.assert_array_equal(calls[-1].output, y)
  np.testing.assert_array_equal(calls[0].args[0], x)
  _, state = model.apply(variables, x, scale=2.0, capture_intermediates=True,
                         mutable=["intermediates"])
  captured = state["intermediates"]
  np.testing.assert_array_equal(calls[0].output, captured["Block_0"]["Dense_0"]["__call__"][0])
  np.testing.assert_array_equal(calls[3].args[0], 2.0 * captured["Block_0"]["__call__"][0])
  np.testing.assert_array_equal(calls[0].variables["params"]["kernel"],
                                variables["params"]["Block_0"]["Dense_0"]["kernel"])


def test_types_filter_and_nothing_outside_the_block(net):
  model, variables, x = net
  with tracing.trace((nn.Dense,)) as calls:
    model.apply(variables, x)
  model.apply(variables, x)  # after the block: not recorded
  assert [(c.name, type(c.module).__name__) for c in calls] == [("Block_0/Dense_0", "Dense"),
                                                                ("Dense_0", "Dense")]
  with tracing.trace(activations.Activation) as acts:
    model.apply(variables, x)
  assert [c.name for c in acts] == ["Block_0/Activation_0"]


def test_perturbation_gradients_are_the_backward_signal(net):
  model, variables, x = net

  def loss(perturbations):
    with tracing.trace((nn.Dense,), perturbations=perturbations):
      return model.apply(variables, x).sum()

  zeros = [jnp.zeros((5, 3)), jnp.zeros((5, 2))]
  assert float(loss(zeros)) == pytest.approx(float(model.apply(variables, x).sum()))
  ones = [jnp.zeros((5, 3)), jnp.ones((5, 2))]
  assert float(loss(ones)) == pytest.approx(float(loss(zeros)) + 10.0, rel=1e-6)
  g_hidden, g_out = jax.jit(jax.grad(loss))(zeros)
  p = jax.tree.map(np.asarray, variables["params"])
  z = np.asarray(x) @ p["Block_0"]["Dense_0"]["kernel"] + p["Block_0"]["Dense_0"]["bias"]
  d_out = np.ones((5, 2))                                     # d sum / d logits
  d_pre = (d_out @ p["Dense_0"]["kernel"].T) * (z > 0)        # through Dense_0 and the ReLU
  np.testing.assert_allclose(g_out, d_out)
  np.testing.assert_allclose(g_hidden, d_pre, rtol=1e-6)


def test_works_under_jit_and_vmap(net):
  model, variables, x = net

  def hidden(v, x):
    with tracing.trace(activations.Activation) as calls:
      model.apply(v, x)
    return calls[0].output

  expected = hidden(variables, x)
  np.testing.assert_allclose(jax.jit(hidden)(variables, x), expected, rtol=1e-6)
  np.testing.assert_allclose(jax.vmap(hidden, in_axes=(None, 0))(variables, x[:, None])[:, 0],
                             expected, rtol=1e-6)
