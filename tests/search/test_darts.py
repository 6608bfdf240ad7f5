"""DARTS: the exact second-order architecture gradient, the mask, the derived cell, a short run."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn.data import sources
from jaxcnn.search import darts, nasbench201 as nb, strategies, supernet as sn
from jaxcnn.train.steps import cross_entropy
from search_checks import darts_gradient_terms, fill

# Every op on three edges, fewer on the others (a smaller program to compile).
MASK = np.ones(darts.SHAPE, bool)
MASK[3, [2, 3]] = False  # 3<-0: none, skip, avg pool
MASK[4] = [True, False, True, False, False]  # 3<-1: none, conv 1x1
MASK[5] = [False, False, False, True, True]  # 3<-2: conv 3x3, avg pool


def net_variables(net, x, seed=0, dtype=np.float32):
  shapes = jax.eval_shape(lambda k: net.init(k, x, jnp.zeros(darts.SHAPE), train=False),
                          jax.random.PRNGKey(0))
  return fill(shapes, seed, dtype)


def test_second_order_on_a_quadratic_is_the_closed_form():
  # L_train = w'Aw/2 + w'Ba, L_val = |w - t|^2/2 + d'a: by hand, w' = w - xi (Aw + Ba) and
  # d/da L_val(w'(a), a) = d - xi B'(w' - t); the mixed second derivative is B'.
  rng = np.random.default_rng(0)
  a_mat, b_mat = rng.normal(size=(2, 3, 3)), rng.normal(size=(3, 2))
  a_mat = a_mat[0] @ a_mat[0].T
  t, d, w, alpha, xi = rng.normal(size=3), rng.normal(size=2), rng.normal(size=3), \
      rng.normal(size=2), 0.3
  with jax.enable_x64():
    split = lambda w: {"u": w[:1], "v": w[1:]}  # the weights as a pytree
    join = lambda p: jnp.concatenate([p["u"], p["v"]])
    train = lambda p, a: join(p) @ a_mat @ join(p) / 2 + join(p) @ b_mat @ a
    val = lambda p, a: jnp.sum((join(p) - t) ** 2) / 2 + d @ a
    w1 = w - xi * (a_mat @ w + b_mat @ alpha)
    value, grad = darts.alpha_grad(train, val, split(jnp.asarray(w)), jnp.asarray(alpha), xi)
    np.testing.assert_allclose(grad, d - xi * b_mat.T @ (w1 - t), rtol=1e-12)
    assert value == pytest.approx(np.sum((w1 - t) ** 2) / 2 + d @ alpha, rel=1e-12)
    hv = darts.mixed_hvp(train, split(jnp.asarray(w)), jnp.asarray(alpha), split(jnp.asarray(t)))
    np.testing.assert_allclose(hv, b_mat.T @ t, rtol=1e-12)
    _, first = darts.alpha_grad(train, val, split(jnp.asarray(w)), jnp.asarray(alpha), 0.0)
    np.testing.assert_allclose(first, d, rtol=1e-12)
  with pytest.raises(ValueError, match="xi must be >= 0"):
    darts.alpha_grad(train, val, w, alpha, -0.1)


def test_second_order_on_a_mixed_op_mlp_is_the_unrolled_gradient():
  # A two-layer network whose hidden layers mix three ops by softmax(alpha) (Eq. 2 on an MLP):
  # the jvp-based gradient against reverse-over-reverse jax.grad of the unrolled objective, the
  # mixed Hessian-vector product against a central finite difference.
  rng = np.random.default_rng(0)
  data = [(rng.normal(size=(8, 4)), rng.integers(0, 3, 8)) for _ in range(2)]
  xi, eps = 0.1, 1e-5
  with jax.enable_x64():
    params = {"w1": jnp.asarray(rng.normal(size=(4, 5))),
              "w2": jnp.asarray(rng.normal(size=(5, 3)))}
    alpha = jnp.asarray(rng.normal(size=(2, 3)))
    ops = (jnp.tanh, jax.nn.softplus, lambda h: h)

    def loss(x, y):
      def f(p, a):
        h = x
        for k, w in enumerate((p["w1"], p["w2"])):
          h = h @ w
          h = sum(wk * op(h) for wk, op in zip(jax.nn.softmax(a[k]), ops))
        return cross_entropy(h, y).mean()
      return f

    train, val = loss(*data[0]), loss(*data[1])
    direction = jnp.asarray(rng.normal(size=(2, 3)))

    @jax.jit
    def everything(params, alpha):
      _, second = darts.alpha_grad(train, val, params, alpha, xi)
      unrolled = lambda a: val(jax.tree.map(lambda w, g: w - xi * g, params,
                                            jax.grad(train)(params, a)), a)
      v = jax.grad(val)(params, alpha)
      hv = darts.mixed_hvp(train, params, alpha, v)
      grad_a = lambda p: jax.grad(train, argnums=1)(p, alpha)
      shift = lambda s: jax.tree.map(lambda w, t: w + s * eps * t, params, v)
      fd_hv = (grad_a(shift(1)) - grad_a(shift(-1))) / (2 * eps)
      _, first = darts.alpha_grad(train, val, params, alpha, 0.0)
      fd_first = (val(params, alpha + eps * direction) - val(params, alpha - eps * direction)
                  ) / (2 * eps)
      return second, jax.grad(unrolled)(alpha), hv, fd_hv, first, fd_first

    second, reference, hv, fd_hv, first, fd_first = map(np.asarray, everything(params, alpha))
  np.testing.assert_allclose(second, reference, rtol=1e-10, atol=1e-14)
  assert np.abs(second - first).max() > 1e-3  # the second-order term matters here
  np.testing.assert_allclose(hv, fd_hv, rtol=1e-6, atol=1e-10)
  assert np.sum(first * np.asarray(direction)) == pytest.approx(float(fd_first), rel=1e-7)


@pytest.mark.slow  # about 3 min of CPU: grad-of-grad programs over the network compile
def test_network_alpha_gradient_is_exact_in_float64():
  xi, eps = 0.05, 1e-5
  with jax.enable_x64():
    net = darts.DARTSNet(num_cells=1, channels=4, num_classes=3, mask=MASK)
    rng = np.random.default_rng(1)
    batches = [{"image": jnp.asarray(rng.normal(size=(4, 8, 8, 3))),
                "label": jnp.asarray(rng.integers(0, 3, 4))} for _ in range(2)]
    variables = jax.tree.map(jnp.asarray, net_variables(net, batches[0]["image"], 1, np.float64))
    alpha = jnp.asarray(rng.normal(size=darts.SHAPE))
    direction = jnp.asarray(rng.normal(size=darts.SHAPE))

    t = darts_gradient_terms(net, variables, alpha, batches, xi, eps, direction)
  second, reference, first, fd_first, hv, fd_hv = (
      t[k] for k in ("second", "reference", "first", "fd_first", "hv", "fd_hv"))
  assert second.dtype == np.float64
  np.testing.assert_allclose(second, reference, rtol=1e-9, atol=1e-12)
  assert np.abs(second - first).max() > 1e-4  # the second-order term matters here
  assert np.sum(first * np.asarray(direction)) == pytest.approx(float(fd_first), rel=1e-7)
  np.testing.assert_allclose(hv, fd_hv, rtol=1e-6, atol=1e-9)
  assert np.abs(hv).max() > 1e-3
  for g in (second, first, hv):  # masked ops have zero weight, hence zero gradient
    np.testing.assert_array_equal(np.asarray(g)[~MASK], 0.0)


def test_mask_gives_zero_weight_and_is_never_derived():
  alpha = np.where(MASK, 0.0, 100.0)  # the masked ops have the largest logits
  w = np.asarray(darts.edge_weights(alpha, MASK))
  np.testing.assert_array_equal(w[~MASK], 0.0)
  np.testing.assert_allclose(w[MASK], (1 / MASK.sum(-1, keepdims=True) * MASK)[MASK], rtol=1e-6)
  rng = np.random.default_rng(0)
  for _ in range(20):
    a = rng.normal(size=darts.SHAPE) + 50 * ~MASK
    arch = darts.derive(a, MASK)
    assert MASK[np.arange(6), arch].all()
    np.testing.assert_array_equal(arch, np.where(MASK, a, -np.inf).argmax(-1))
  # The original DARTS rule skips `none` unless an edge allows nothing else.
  a = np.zeros(darts.SHAPE)
  a[:, 0] = 1.0
  only_none = np.zeros(darts.SHAPE, bool)
  only_none[:, 0], only_none[:3, 1:] = True, True
  np.testing.assert_array_equal(darts.derive(a, only_none), [0] * 6)
  np.testing.assert_array_equal(darts.derive(a, only_none, keep_none=False), [1, 1, 1, 0, 0, 0])
  # The masked ops are not built: no weights for the convolutions a mask forbids.
  net = darts.DARTSNet(num_cells=1, channels=4, mask=MASK)
  edges = net_variables(net, jnp.zeros((1, 8, 8, 3)))["params"]["cell_1_0"]
  assert "edge_3_0" not in edges  # none, skip, avg pool: no weights
  assert set(edges["edge_3_1"]) == {"nor_conv_1x1"} and set(edges["edge_3_2"]) == {"nor_conv_3x3"}
  with pytest.raises(ValueError, match="allows no op on edge '2<-0'"):
    darts.check_mask(np.eye(6, 5, dtype=bool) & (np.arange(6) != 1)[:, None])
  with pytest.raises(ValueError, match=r"mask must be bool \[6, 5\]"):
    darts.DARTSNet(mask=np.ones((6, 4), bool))


def test_strategy_asks_the_derived_cell_in_the_spaces_indices_and_refuses_tell():
  strategy = strategies.get("darts")
  rng = np.random.default_rng(0)
  alpha = jnp.asarray(rng.normal(size=darts.SHAPE), jnp.float32)
  state = strategy.init(jax.random.PRNGKey(0), nb.SMALL.space).replace(alpha=alpha)
  archs, _ = strategy.ask(jax.random.PRNGKey(1), state, 3)
  full = darts.derive(alpha, nb.SMALL.mask)
  np.testing.assert_array_equal(archs, np.broadcast_to(darts.to_subspace(full, nb.SMALL), (3, 4)))
  np.testing.assert_array_equal(nb.SMALL.to_full(archs[0]), full)
  state = strategy.init(jax.random.PRNGKey(0), nb.SPACE).replace(alpha=alpha)
  np.testing.assert_array_equal(strategy.ask(None, state, 1)[0][0], darts.derive(alpha))
  with pytest.raises(NotImplementedError, match=r"darts.search"):
    strategy.tell(state, archs, jnp.zeros(3))
  with pytest.raises(ValueError, match="NAS-Bench-201 cell space"):
    strategy.init(jax.random.PRNGKey(0), nb.Space({"op": ("conv", "pool")}))
  with pytest.raises(ValueError, match="the subspace allows"):
    darts.to_subspace([3, 3, 3, 3, 3, 3], nb.SMALL)  # 2<-0 is fixed to none in SMALL


@functools.lru_cache(maxsize=None)
def digits():
  data = sources.subsets("digits", {"train": 64, "val": 32}, seed=0)
  return sources.InMemory(data, eval_batch_size=32)


# A cheap mask for the fast run: no weights in the cells; two ops on three edges.
CHEAP = np.zeros(darts.SHAPE, bool)
for edge, ops in enumerate([(1, 4), (0, 1), (1,), (0, 4), (0,), (1,)]):
  CHEAP[edge, list(ops)] = True


@pytest.mark.parametrize("xi, mask", [
    (0.0, CHEAP),  # first order
    pytest.param(0.05, nb.SMALL.mask, marks=pytest.mark.slow),  # second order; ~1 min CPU
])
def test_short_run_is_deterministic_moves_alpha_and_derives_a_working_cell(xi, mask):
  source = digits()
  net = darts.DARTSNet(num_cells=1, channels=8, mask=mask)
  variables = net_variables(net, jnp.zeros((1, 8, 8, 1)))
  w_tx, alpha_tx = optax.sgd(0.05, momentum=0.9), optax.adam(0.05, b1=0.5, b2=0.999)
  run = functools.partial(darts.search, net, source, num_steps=3, batch_size=16, xi=xi,
                          w_tx=w_tx, alpha_tx=alpha_tx, variables=variables, progress=False)
  result = run(key=jax.random.PRNGKey(0))
  again = run(key=jax.random.PRNGKey(0))
  other = run(key=jax.random.PRNGKey(1))
  np.testing.assert_array_equal(result.alpha_history, again.alpha_history)
  np.testing.assert_array_equal(result.train_loss, again.train_loss)
  assert not np.array_equal(result.alpha_history, other.alpha_history)
  assert result.alpha_history.shape == (4, 6, 5) and result.val_loss.shape == (3,)
  assert np.isfinite(result.train_loss).all() and np.isfinite(result.val_loss).all()
  moved = np.abs(result.alpha_history[-1] - result.alpha_history[0])
  free = mask & (mask.sum(-1, keepdims=True) > 1)
  assert moved[free].min() > 1e-2  # Adam moves every free logit by about lr per step
  assert moved[~free].max() == 0  # zero gradient where the softmax is constant (masked, or 1)
  np.testing.assert_array_equal(result.arch, darts.derive(result.alpha, mask))
  # The derived cell builds through the zoo and runs under jit with the DARTS weights; with a
  # one-hot alpha the DARTS network computes exactly that cell.
  child = nb.build(result.arch, num_cells=1, channels=8)
  child_vars = sn.child_variables(result.variables, result.arch)
  x = jnp.asarray(source.sample(16)) / 255.0
  logits = jax.jit(lambda v, x: child.apply(v, x, train=False))(child_vars, x)
  one_hot = 1e4 * jax.nn.one_hot(result.arch, len(nb.OPS))
  relaxed = jax.jit(lambda v, x: net.apply(v, x, one_hot, train=False))(result.variables, x)
  assert logits.shape == (16, 10)
  np.testing.assert_allclose(relaxed, logits, rtol=1e-5, atol=1e-5)


def test_search_rejects_bad_input():
  source = digits()
  net = darts.DARTSNet(num_cells=1, channels=8, mask=CHEAP)
  with pytest.raises(ValueError, match="trains alpha on split 'test'"):
    darts.search(net, source, num_steps=1, batch_size=8, key=jax.random.PRNGKey(0),
                 val_split="test")
  with pytest.raises(ValueError, match="num_steps >= 1"):
    darts.search(net, source, num_steps=0, batch_size=8, key=jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match=r"alpha must be float \[6, 5\]"):
    jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)),
                                    jnp.zeros((6, 4)), train=False))
