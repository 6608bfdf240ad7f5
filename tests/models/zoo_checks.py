"""Checks shared by the model-zoo tests: published counts, shapes, compiled forward, training, vmap,
and swapping ``act`` / ``kernel_init`` / ``norm``.

Cheap where possible: counts and shapes come from ``jax.eval_shape``, traced once per (model,
shape) in a test process (:func:`abstract_init`); a compiled forward pass and the variable sets
of :func:`check_trains` and :func:`check_vmap_over_inits` get random parameters filled in by NumPy
from the abstract ones (initializing a big network under jit costs more to compile than its
forward pass).
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.models import count_params, create_model, flops, model_info
from jaxcnn.models.analysis import cached_per_model
from jaxcnn.nn import activations

act = activations.get  # the resolved activation an Activation module holds: act("elu")


def key(seed: int) -> jax.Array:
  """A PRNG key for initializing in tests. RBG keys: under jit, initializing a network with
  threefry keys costs about 3.5x more compile time on CPU (6.5 s against 1.8 s for ResNet-8)."""
  return jax.random.key(seed, impl="rbg")


def published_tolerance(published) -> float:
  """1% of the figure, or half a unit of its last published digit if it was rounded coarser."""
  return max(0.01 * published.params, published.params_tol)


def check_published(name: str) -> None:
  """At the model's default input size (registry metadata): parameters within tolerance of the
  published figure (if any), MACs (if published) within 5%."""
  info = model_info(name)
  published = info.published
  assert published is not None and (published.params or published.macs), name
  model = create_model(name, **published.overrides)
  shape = (1, *info.input_size)
  if published.params is not None:
    n = count_params(model, shape)
    assert abs(n - published.params) <= published_tolerance(published), (name, n, published)
  if published.macs is not None:
    macs = flops(model, shape)
    assert abs(macs / published.macs - 1) <= 0.05, (name, macs, published.macs)


@cached_per_model
def abstract_init(model: nn.Module, x_shape) -> tuple[jax.ShapeDtypeStruct, dict]:
  """Abstract ``(output, variables)`` of the eval-mode ``model.init_with_output``, traced once
  per (model, shape) in a test process: the swap checks and tests that look at one model several
  ways share the trace."""
  x = jax.ShapeDtypeStruct(tuple(x_shape), jnp.float32)
  return jax.eval_shape(lambda k, x: model.init_with_output(k, x, train=False),
                        jax.random.key(0), x)


def abstract_variables(model: nn.Module, x_shape) -> dict:
  return abstract_init(model, x_shape)[1]


def output_shape(model: nn.Module, x_shape, *, train: bool = False):
  """Abstract output of ``model.apply`` (train mode gets a dropout rng and mutable batch_stats)."""
  variables = abstract_variables(model, x_shape)
  x = jax.ShapeDtypeStruct(tuple(x_shape), jnp.float32)
  if not train:
    return jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  fn = lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"],  # noqa: E731
                                rngs={"dropout": jax.random.key(1)})[0]
  return jax.eval_shape(fn, variables, x)


def random_variables(model: nn.Module, x_shape, seed: int = 0) -> dict:
  """Variables of the right shapes: parameters N(0, 1/fan_in) (NumPy), BatchNorm stats (0, 1)."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = str(path[-1].key)
    if name == "var" or name == "scale":
      return jnp.ones(leaf.shape, leaf.dtype)
    if name in ("mean", "bias") or len(leaf.shape) < 2:
      return jnp.zeros(leaf.shape, leaf.dtype)
    fan_in = math.prod(leaf.shape[:-1])
    return jnp.asarray(rng.standard_normal(leaf.shape, dtype=np.float32) / math.sqrt(fan_in))

  return jax.tree_util.tree_map_with_path(fill, abstract_variables(model, x_shape))


def compiled_forward(model: nn.Module, x_shape) -> np.ndarray:
  """Eval-mode output of the jitted forward pass on random images; checks it is finite."""
  variables = random_variables(model, x_shape)
  x = jnp.asarray(np.random.default_rng(1).standard_normal(x_shape, dtype=np.float32))
  y = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x))
  assert np.all(np.isfinite(y))
  return y


def train_losses(model: nn.Module, x_shape, num_classes: int, steps: int = 6,
                 learning_rate: float = 1e-3, variables: dict | None = None) -> list[float]:
  """Losses of ``steps`` Adam steps on one tiny fixed batch (jitted once), from ``variables``
  (default: a fresh initialization)."""
  x = jax.random.normal(key(0), x_shape)
  labels = jnp.arange(x_shape[0]) % num_classes
  if variables is None:
    variables = jax.jit(functools.partial(model.init, train=False))(key(1), x)
  params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}
  tx = optax.adam(learning_rate)
  opt_state = tx.init(params)

  def loss_fn(params, state, rng):
    out, new_state = model.apply({"params": params, **state}, x, train=True,
                                 mutable=list(state), rngs={"dropout": rng})
    logits = out[0] if isinstance(out, tuple) else out
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, new_state

  @jax.jit
  def step(params, state, opt_state, i):
    # The same dropout mask every step, so the loss is a fixed function of the parameters.
    (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state,
                                                                     key(2))
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), state, opt_state, loss

  losses = []
  for i in range(steps):
    params, state, opt_state, loss = step(params, state, opt_state, i)
    losses.append(float(loss))
  return losses


def vmap_two_inits(model: nn.Module, x_shape) -> np.ndarray:
  """Outputs ``(2, batch, classes)`` of two initializations, initialized and applied under vmap."""
  x = jax.random.normal(key(0), x_shape)
  keys = jax.random.split(key(1), 2)

  @jax.jit
  def run(keys):
    variables = jax.vmap(lambda k: model.init(k, x, train=False))(keys)
    return jax.vmap(lambda v: model.apply(v, x, train=False))(variables)

  return np.asarray(run(keys))


def trace(model: nn.Module, x_shape) -> tuple[dict, list[nn.Module]]:
  """Abstract variables and every module called in the eval forward pass (eval_shape only)."""
  variables = abstract_variables(model, x_shape)
  x = jax.ShapeDtypeStruct(tuple(x_shape), jnp.float32)
  calls = []

  def record(next_fun, args, kwargs, context):
    if context.method_name == "__call__":
      calls.append(context.module)
    return next_fun(*args, **kwargs)

  def forward(v, x):
    with nn.intercept_methods(record):
      return model.apply(v, x, train=False)

  jax.eval_shape(forward, variables, x)
  return variables, calls


def module_calls(model: nn.Module, x_shape) -> list[nn.Module]:
  """Every module called in the eval forward pass."""
  return trace(model, x_shape)[1]


def called(model: nn.Module, x_shape=(1, 32, 32, 3), kind: type = activations.Activation,
           attribute: str = "fn") -> list:
  """``attribute`` of every ``kind`` module called in the eval forward pass, in call order
  (by default: the resolved activation of every Activation, compare with ``act("relu")``)."""
  return [getattr(m, attribute) for m in module_calls(model, x_shape) if isinstance(m, kind)]


def _shapes(tree) -> dict:
  return jax.tree.map(lambda a: a.shape, tree)


def _without_norm(tree):
  """The params tree with normalization (BatchNorm/GroupNorm/LayerNorm) subtrees removed."""
  if not isinstance(tree, dict):
    return tree
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict) and ("norm" in k.lower()):
      continue
    pruned = _without_norm(v)
    if pruned != {}:
      out[k] = pruned
  return out


def _count(variables) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(variables.get("params", {})))


def check_act_swap(name: str, x_shape, **fields) -> None:
  """``act="elu"`` puts ELU in every Activation module and changes no parameter shape."""
  vb, base = trace(create_model(name, **fields), x_shape)
  vs, swapped = trace(create_model(name, act="elu", **fields), x_shape)
  acts = [m.fn for m in swapped if isinstance(m, activations.Activation)]
  base_acts = [m.fn for m in base if isinstance(m, activations.Activation)]
  assert acts and len(acts) == len(base_acts)
  assert all(a is act("elu") for a in acts), set(map(str, acts))
  assert all(a is not act("elu") for a in base_acts)
  assert _shapes(vs) == _shapes(vb)


def check_kernel_init_swap(name: str, x_shape, **fields) -> None:
  """A callable ``kernel_init`` reaches every Conv and Dense layer, and nothing else changes."""
  init = nn.initializers.constant(0.125)
  vs, calls = trace(create_model(name, kernel_init=init, **fields), x_shape)
  layers = [m for m in calls if isinstance(m, (nn.Conv, nn.Dense))]
  assert layers
  assert all(m.kernel_init is init for m in layers), [
      type(m).__name__ for m in layers if m.kernel_init is not init]
  assert _shapes(vs) == _shapes(abstract_variables(create_model(name, **fields), x_shape))


def check_norm_swap(name: str, x_shape, **fields) -> None:
  """``norm="none"`` removes every normalization and its state and nothing else; ``"group"`` swaps
  BatchNorm for GroupNorm with the same parameter count and no running statistics."""
  vb, base = trace(create_model(name, norm="batch", **fields), x_shape)
  vn, none = trace(create_model(name, norm="none", **fields), x_shape)
  vg, group = trace(create_model(name, norm="group", **fields), x_shape)
  bn_layers = [m for m in base if isinstance(m, nn.BatchNorm)]
  assert bn_layers and "batch_stats" in vb
  assert "batch_stats" not in vn and "batch_stats" not in vg
  assert not [m for m in none if isinstance(m, (nn.BatchNorm, nn.GroupNorm))]
  assert len([m for m in group if isinstance(m, nn.GroupNorm)]) == len(bn_layers)
  assert not [m for m in group if isinstance(m, nn.BatchNorm)]
  # BatchNorm and GroupNorm both hold a scale and a bias per channel (BatchNorm: and a mean and a
  # variance per channel in batch_stats).
  channels = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(vb["batch_stats"])) // 2
  assert _count(vb) - _count(vn) == 2 * channels
  assert _count(vg) == _count(vb)
  # Everything but the normalization layers keeps its shape.
  assert _shapes(_without_norm(vn["params"])) == _shapes(_without_norm(vb["params"]))


def check_small_forward(model: nn.Module, x_shape=(2, 32, 32, 3), num_classes: int = 7) -> None:
  """The jitted eval forward pass on random images: ``(batch, num_classes)``, finite, and
  different for different images."""
  x = jax.random.normal(jax.random.key(0), x_shape)
  variables = random_variables(model, x_shape)
  logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  assert logits.shape == (x_shape[0], num_classes) and bool(jnp.isfinite(logits).all())
  assert not np.allclose(logits[0], logits[1])  # depends on the input


def stacked_random_variables(model: nn.Module, x_shape=(2, 32, 32, 3), n: int = 2) -> dict:
  """``n`` sets of :func:`random_variables` (seeds ``0..n-1``) stacked on a leading axis: the
  input of :func:`check_trains` and :func:`check_vmap_over_inits` without compiling an init
  (a vmapped init of NASNet compiles for 10 s; jitted and vmapped inits are checked on other
  models, e.g. test_resnet and test_mobilenet)."""
  sets = [random_variables(model, x_shape, seed) for seed in range(n)]
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *sets)


def check_trains(model: nn.Module, stacked: dict, x_shape, num_classes: int, steps: int = 10,
                 learning_rate: float = 1e-2, ratio: float = 0.7) -> None:
  """From the first of the ``stacked`` variable sets, ``steps`` Adam steps on one batch lower the
  loss below ``ratio`` of its start."""
  losses = train_losses(model, x_shape, num_classes, steps=steps, learning_rate=learning_rate,
                        variables=jax.tree.map(lambda a: a[0], stacked))
  assert np.isfinite(losses).all() and losses[-1] < ratio * losses[0], losses


def check_vmap_over_inits(model: nn.Module, stacked: dict, x_shape=(2, 32, 32, 3)) -> None:
  """The stacked variable sets differ, and the vmapped apply equals the single apply."""
  x = jax.random.normal(jax.random.key(0), x_shape)
  kernels = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(stacked["params"])
             if str(path[-1].key) == "kernel"]
  assert kernels and kernels[0].shape[0] == 2 and not np.allclose(kernels[0][0], kernels[0][1])
  batched = jax.jit(jax.vmap(lambda v: model.apply(v, x, train=False)))(stacked)
  single = jax.jit(lambda v: model.apply(v, x, train=False))(jax.tree.map(lambda a: a[1], stacked))
  assert batched.shape[:2] == (2, x_shape[0])
  np.testing.assert_allclose(batched[1], single, rtol=1e-4, atol=1e-5)


def check_norm_and_kernel_init_counts(model: nn.Module, shape=(1, 32, 32, 3)) -> None:
  """``norm="group"`` keeps the parameter count and drops the running statistics; ``"none"``
  removes exactly the BatchNorm scales and offsets; a constant ``kernel_init`` sets every kernel
  (scales 1, biases 0)."""
  base = abstract_variables(model, shape)
  group = abstract_variables(model.clone(norm="group"), shape)
  assert _count(group) == _count(base) and "batch_stats" not in group
  n_bn = sum(math.prod(a.shape) for a in jax.tree.leaves(base["batch_stats"]))
  assert _count(base) - _count(abstract_variables(model.clone(norm="none"), shape)) == n_bn
  const = model.clone(kernel_init=nn.initializers.constant(0.25))
  variables = jax.jit(lambda k: const.init(k, jnp.ones(shape), train=False))(key(0))
  for path, leaf in jax.tree_util.tree_leaves_with_path(variables["params"]):
    expected = {"kernel": 0.25, "scale": 1.0, "bias": 0.0}[path[-1].key]
    np.testing.assert_array_equal(leaf, expected, err_msg=jax.tree_util.keystr(path))
