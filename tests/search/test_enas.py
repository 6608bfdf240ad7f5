"""ENAS: the controller's settings, and the shared weights trained in alternation with it."""

import functools
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn import search
from jaxcnn.data import sources
from jaxcnn.search import enas, evaluators, nasbench201 as nb, supernet as sn
from jaxcnn.search.run import HISTORY_FILE, STATE_FILE, _compiled
from jaxcnn.search.strategies import LSTMController

SMALL = nb.SMALL
ALL = SMALL.all()  # the 256 architectures of the subspace


STRATEGY = enas.ENAS(hidden=8, learning_rate=0.05)  # one config: its ask and tell compile once
ASK, TELL = _compiled(STRATEGY)
NUM = 4  # architectures per ask, everywhere below


def _init(key=0):
  return STRATEGY.init(jax.random.PRNGKey(key), SMALL.space)  # eager, as search.run calls it


@jax.jit
def _probe(params, num_options):
  """On all 256 architectures: ENAS's teacher-forced logits, the plain LSTM's logits with the
  same parameters, and log p(arch)."""
  return (STRATEGY.logits(params, num_options, ALL),
          LSTMController(4, 4, 8).apply({"params": params}, ALL),
          STRATEGY.log_prob(params, num_options, ALL))


def test_logits_are_tempered_and_squashed():
  state = _init()
  logits, raw, logp = _probe(state.params, state.num_options)
  np.testing.assert_allclose(logits, 2.5 * np.tanh(np.asarray(raw) / 5.0), rtol=1e-6, atol=1e-6)
  # log p(arch) is a distribution over the whole subspace, bounded below by the squashing.
  assert float(jnp.exp(logp).sum()) == pytest.approx(1.0, abs=1e-5)
  assert float(logp.min()) >= 4 * np.log(np.exp(-2.5) / (np.exp(-2.5) + 3 * np.exp(2.5)))


def test_sample_entropy_is_added_to_the_reward():
  state = _init(1)
  rows = np.asarray([3, 77, 200, 255])
  logits = np.asarray(_probe(state.params, state.num_options)[0][rows], np.float64)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  entropy = -(np.exp(logp) * logp).sum((-2, -1))  # per-choice entropies along each arch
  # Equal rewards: only the entropy bonus moves the policy; the first baseline is the mean of
  # the rewards with the bonus.
  told = TELL(state, ALL[rows], jnp.full((NUM,), 0.5))
  assert float(told.baseline) == pytest.approx(0.5 + 0.1 * entropy.mean(), rel=1e-5)
  assert not np.allclose(told.params["head_b"], state.params["head_b"])


def test_controller_learns_a_planted_best_arch():
  planted = np.asarray([2, 0, 3, 1], np.int32)
  index = int(np.ravel_multi_index(tuple(planted), (4,) * 4))
  reward = lambda a: (a == planted).mean(-1) ** 4  # 1 at the planted arch, 0.0625 one choice right
  state = _init()
  p0 = float(jnp.exp(_probe(state.params, state.num_options)[2][index]))
  for step in range(40):
    archs, state = ASK(jax.random.PRNGKey(step), state, NUM)
    state = TELL(state, archs, reward(np.asarray(archs)).astype(np.float32))
  p1 = float(jnp.exp(_probe(state.params, state.num_options)[2][index]))
  assert p0 < 2 / 256 and p1 > 10 * p0, (p0, p1)
  np.testing.assert_array_equal(enas.greedy(STRATEGY, state), planted)


def test_registry_and_bad_settings():
  s = search.strategies.get("enas(learning_rate=0.01)")
  assert isinstance(s, enas.ENAS) and s.learning_rate == 0.01 and s.policy == "lstm"
  assert (s.temperature, s.tanh_constant, s.entropy_reward, s.hidden) == (5.0, 2.5, 0.1, 100)
  with pytest.raises(ValueError, match="Unknown arguments.*'tanh'.*tanh_constant"):
    search.strategies.get("enas", tanh=2.0)
  with pytest.raises(ValueError, match="policy must be 'lstm'"):
    enas.ENAS(policy="factorized")
  with pytest.raises(ValueError, match="temperature must be > 0"):
    enas.ENAS(temperature=0.0)


# ----------------------------------------------------------------------------------------------
# The shared weights, on the supernet in miniature: a stem, SMALL's four free edges as the
# supernet's mixed edges, a head. The evaluator's code is the same; its train step compiles in
# about 3 s of CPU, the full supernet's (three stages of cells) in tens: the slow test runs that.


class Chain(nn.Module):
  """SMALL's cell without its 'none' edges: the chain 0 -> 1 -> 2 -> 3 and the skip 0 -> 3."""

  @nn.compact
  def __call__(self, x, arch=None, *, train):
    arch = jnp.zeros(6, jnp.int32) if arch is None else arch
    x = nn.Conv(4, (3, 3), use_bias=False, name="stem")(x)
    edge = {name: sn.MixedEdge(4, name=f"edge_{name}") for name in ("1_0", "2_1", "3_2", "3_0")}
    node1 = edge["1_0"](x, arch[0], train=train)  # arch in NAS-Bench-201's edge order
    node2 = edge["2_1"](node1, arch[2], train=train)
    node3 = edge["3_2"](node2, arch[5], train=train) + edge["3_0"](x, arch[3], train=train)
    return nn.Dense(5, name="head")(node3.mean((1, 2)))


NET = Chain()
TX = optax.sgd(0.1, momentum=0.9)


def _scale(x):
  return x / 16.0


@functools.lru_cache(maxsize=None)
def _source():
  rng = np.random.default_rng(0)
  data = {s: {"image": rng.integers(0, 17, (n, 8, 8, 1), dtype=np.uint8),
              "label": rng.integers(0, 5, n).astype(np.int32)}
          for s, n in [("train", 40), ("val", 24)]}
  return sources.InMemory(data, eval_batch_size=16)  # val: two batches, the second padded


@functools.lru_cache(maxsize=None)
def _variables():
  """Random variables filled by NumPy (no init program to compile)."""
  shapes = jax.eval_shape(lambda k: NET.init(k, jnp.zeros((1, 8, 8, 1)), train=False),
                          jax.random.PRNGKey(0))
  rng = np.random.default_rng(1)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path[-1:])
    if "kernel" in name:
      return rng.normal(0, 1 / np.sqrt(np.prod(leaf.shape[:-1])), leaf.shape).astype(np.float32)
    return (("scale" in name or "var" in name) + 0.1 * rng.uniform(size=leaf.shape)
            ).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def _trainer(train_steps=3):
  return enas.SharedTraining(NET, TX, _source(), train_steps=train_steps, batch_size=8,
                             subspace=SMALL, variables=_variables(), preprocess=_scale,
                             mode="map")


def test_reward_is_the_shared_weight_accuracy_and_only_sampled_ops_train():
  ev = _trainer(train_steps=NUM)
  # Edge 3<-0 is always 'none', 2<-1 and 3<-2 never a 1x1 convolution.
  archs = np.asarray([[3, 3, 1, 0], [2, 1, 3, 0], [3, 1, 1, 0], [2, 3, 3, 0]], np.int32)
  rewards, metrics = ev.evaluate(archs)
  assert int(ev.state.step) == NUM and ev.calls == 1
  # The reward: SharedWeights on the updated weights, on the full NAS-Bench-201 architectures.
  ref, ref_metrics = evaluators.SharedWeights(NET, ev.variables, _source(), preprocess=_scale,
                                              mode="map").evaluate(SMALL.to_full(archs))
  np.testing.assert_array_equal(rewards, ref)
  np.testing.assert_array_equal(metrics["loss"], ref_metrics["loss"])
  assert metrics["train_loss"].shape == (NUM,) and np.isfinite(metrics["train_loss"]).all()
  # Exactly the ops on the four paths trained (weights and batch statistics).
  used = {(f"edge_{j}_{i}", nb.OPS[op]) for arch in SMALL.to_full(archs)
          for (j, i), op in zip(nb.EDGES, arch)}
  init, now = _variables(), ev.variables
  for col in ("params", "batch_stats"):
    for edge in ("edge_1_0", "edge_2_1", "edge_3_2", "edge_3_0"):
      for op in nb.KERNEL:
        same = jax.tree.leaves(jax.tree.map(np.array_equal, init[col][edge][op],
                                            now[col][edge][op]))
        assert all(same) == ((edge, op) not in used), (col, edge, op)
  assert not np.array_equal(init["params"]["head"]["kernel"], now["params"]["head"]["kernel"])


def _flat(result, ev):
  return (result.archs, result.rewards, jax.tree.leaves(result.state), jax.tree.leaves(ev.state))


def _equal(a, b):
  for x, y in zip(a, b, strict=True):
    jax.tree.map(np.testing.assert_array_equal, x, y)


def test_search_is_deterministic_and_resumes_exactly(tmp_path):
  run = functools.partial(enas.search, SMALL.space, STRATEGY, batch_size=NUM, progress=False)
  ev = _trainer()
  whole = _flat(run(ev, budget=3 * NUM, key=jax.random.PRNGKey(0)), ev)
  ev = _trainer()
  _equal(whole, _flat(run(ev, budget=3 * NUM, key=jax.random.PRNGKey(0)), ev))
  other = run(_trainer(), budget=3 * NUM, key=jax.random.PRNGKey(1)).archs
  assert not np.array_equal(whole[0], other)
  # Stopped after 2 of 3 steps, resumed with fresh objects.
  work = tmp_path / "run"
  run(_trainer(), budget=2 * NUM, key=jax.random.PRNGKey(0), workdir=work)
  shutil.copytree(work, tmp_path / "at_step_2")
  ev = _trainer()
  _equal(whole, _flat(run(ev, budget=3 * NUM, key=jax.random.PRNGKey(0), workdir=work), ev))
  assert sorted(p.name for p in work.glob("shared_weights_*")) == [
      "shared_weights_2.npz", "shared_weights_3.npz"]
  # Stopped after the weights of step 3 were saved but before the controller's: the controller
  # is at step 2 and the weights saved after step 2 are still there.
  for name in (STATE_FILE, HISTORY_FILE):
    shutil.copy(tmp_path / "at_step_2" / name, work / name)
  ev = _trainer()
  result = run(ev, budget=3 * NUM, key=jax.random.PRNGKey(0), workdir=work)
  _equal(whole, _flat(result, ev))
  # The final pick: the greedy decode and the best of the controller's samples, scored as is.
  best = enas.final(STRATEGY, result.state, ev, jax.random.PRNGKey(3), num_samples=NUM, top_k=3)
  np.testing.assert_array_equal(best.greedy, enas.greedy(STRATEGY, result.state))
  assert (np.diff(best.rewards) <= 0).all()
  assert len(np.unique(best.archs, axis=0)) == len(best.archs)
  rows = np.resize(np.concatenate([best.archs, best.greedy[None]]), (NUM, 4))  # NUM: compiled
  check = ev.score(rows)[0]
  np.testing.assert_array_equal(check[:len(best.archs)], best.rewards)
  assert check[len(best.archs)] == best.greedy_reward
  # One compiled train step served every architecture, fresh, resumed and restored states.
  assert enas._train_step(NET, TX, _scale)._cache_size() == 1


def test_bad_input(tmp_path):
  with pytest.raises(ValueError, match="train_steps >= 1"):
    enas.SharedTraining(NET, TX, _source(), train_steps=0, batch_size=8)
  ev = _trainer()
  with pytest.raises(ValueError, match="out of range"):
    ev.evaluate(np.full((1, 4), 4))
  with pytest.raises(ValueError, match="not the evaluator's"):
    enas.search(nb.SPACE, STRATEGY, ev, budget=2, key=jax.random.PRNGKey(0))
  (tmp_path / STATE_FILE).write_bytes(b"")
  with pytest.raises(ValueError, match="Cannot read search state"):
    enas.search(SMALL.space, STRATEGY, ev, budget=2, key=jax.random.PRNGKey(0), workdir=tmp_path)


@pytest.mark.slow  # the full supernet's init and train step compile: about a minute of CPU
def test_enas_on_the_supernet_over_the_small_space():
  source = sources.InMemory(sources.subsets("digits", {"train": 128, "val": 64}, seed=0),
                            eval_batch_size=64)
  supernet = sn.SuperNet(num_cells=1, channels=8)
  pre = lambda x: x / 255.0
  ev = enas.SharedTraining(supernet, TX, source, train_steps=4, batch_size=16, subspace=SMALL,
                           preprocess=pre)
  init = jax.tree.map(np.asarray, ev.variables)
  result = enas.search(SMALL.space, STRATEGY, ev, budget=12, key=jax.random.PRNGKey(0),
                       batch_size=4, progress=False)
  assert int(ev.state.step) == 12 and np.isfinite(result.rewards).all()
  # The last batch's rewards are SharedWeights' accuracies with the final weights.
  ref, _ = evaluators.SharedWeights(supernet, ev.variables, source, preprocess=pre).evaluate(
      SMALL.to_full(result.archs[-4:]))
  np.testing.assert_array_equal(result.rewards[-4:], ref)
  # The fixed edges ('none') never train their convolutions, anywhere in the network.
  for cell in ("cell_0_0", "cell_1_0", "cell_2_0"):
    for edge in ("edge_2_0", "edge_3_1"):
      jax.tree.map(np.testing.assert_array_equal, init["params"][cell][edge],
                   ev.variables["params"][cell][edge])
  assert not np.array_equal(init["params"]["stem_conv"]["kernel"],
                            ev.variables["params"]["stem_conv"]["kernel"])
  best = enas.final(STRATEGY, result.state, ev, jax.random.PRNGKey(1), num_samples=8)
  assert best.archs.shape[1] == 4 and best.rewards[0] >= best.greedy_reward
