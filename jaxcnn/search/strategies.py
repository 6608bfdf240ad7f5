"""Search strategies: pure ``init/ask/tell`` over a pytree state (evosax's shape).

``state = strategy.init(key, space)``, ``archs, state = strategy.ask(key, state, num)`` (int32
``[num, len(space)]`` option indices) and ``state = strategy.tell(state, archs, rewards)``
(float32 ``[num]``, higher is better). The state is a ``flax.struct.dataclass`` of arrays, so a
search jits (``num`` static), vmaps over keys and checkpoints; everything is deterministic in the
key. Strategies are frozen dataclasses whose fields are their hyperparameters.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxcnn.registry import Registry, parse_spec
from jaxcnn.search.space import Space, uniform

_registry = Registry("search strategy", factory=True)
register = _registry.register
names = _registry.names

_NEG = -1e9  # logit of an option a choice does not have


def get(spec, **kwargs) -> Any:
  """A strategy by name (``"evolution"``, ``"evolution(population_size=50)"``) or factory.

  Raises:
    ValueError listing the known strategies when the name is unknown.
  """
  if isinstance(spec, str):
    name = parse_spec(spec)[0]
    if name not in _registry:
      raise ValueError(f"Unknown search strategy {name!r}. Known strategies: "
                       f"{', '.join(_registry.names())}.")
  return _registry.get(spec, **kwargs)


def _check_tell(archs, rewards):
  archs = jnp.asarray(archs, jnp.int32)
  rewards = jnp.asarray(rewards, jnp.float32)
  if archs.ndim != 2 or rewards.shape != archs.shape[:1]:
    raise ValueError(f"tell takes archs [n, len(space)] and rewards [n], got {archs.shape} and "
                     f"{rewards.shape}.")
  return archs, rewards


# ----------------------------------------------------------------------------------------------
# Random search.


@flax.struct.dataclass
class RandomState:
  num_options: jax.Array  # int32 [L]
  count: jax.Array  # int32 []: architectures told so far


@register(name="random")
@dataclasses.dataclass(frozen=True)
class RandomSearch:
  """Uniform random search, the baseline every strategy must beat.

  References:
    Bergstra & Bengio 2012, "Random Search for Hyper-Parameter Optimization".
    Li & Talwalkar 2019, "Random Search and Reproducibility for Neural Architecture Search".
  """

  def init(self, key: jax.Array, space: Space) -> RandomState:
    del key
    return RandomState(num_options=space.num_options, count=jnp.zeros((), jnp.int32))

  def ask(self, key: jax.Array, state: RandomState, num: int):
    return uniform(key, state.num_options, num), state

  def tell(self, state: RandomState, archs, rewards) -> RandomState:
    archs, rewards = _check_tell(archs, rewards)
    return state.replace(count=state.count + archs.shape[0])


# ----------------------------------------------------------------------------------------------
# Regularized (aging) evolution.


@flax.struct.dataclass
class EvolutionState:
  num_options: jax.Array  # int32 [L]
  archs: jax.Array  # int32 [P, L]: the population, a ring buffer
  rewards: jax.Array  # float32 [P]
  birth: jax.Array  # int32 [P]: index at which each member was told (-1: empty slot)
  count: jax.Array  # int32 []: architectures told so far; the oldest sits at count % P


def mutate(key: jax.Array, arch: jax.Array, num_options: jax.Array) -> jax.Array:
  """Changes exactly one choice (among those with >1 option) to a different option."""
  k1, k2 = jax.random.split(key)
  mutable = num_options > 1
  j = jax.random.categorical(k1, jnp.where(mutable, 0.0, -jnp.inf))
  n = num_options[j]
  shift = 1 + jax.random.randint(k2, (), 0, jnp.maximum(n - 1, 1))
  new = (arch[j] + shift) % n
  return jnp.where(mutable.any(), arch.at[j].set(new), arch)


@register(name="evolution")
@dataclasses.dataclass(frozen=True)
class RegularizedEvolution:
  """Regularized (aging) evolution.

  Until ``population_size`` architectures have been told, ``ask`` returns random ones; then each
  child is the best of ``sample_size`` members drawn without replacement (a tournament) with one
  choice mutated to a different option. ``tell`` appends each child and removes the oldest
  member, whatever its reward.

  Args:
    population_size: P, members kept.
    sample_size: S <= P, tournament size.

  References:
    Real, Aggarwal, Huang & Le 2019, "Regularized Evolution for Image Classifier Architecture
    Search" (AAAI), Algorithm 1.
  """

  population_size: int = 20
  sample_size: int = 5

  def __post_init__(self):
    if self.population_size < 1 or not 1 <= self.sample_size <= self.population_size:
      raise ValueError(f"Need 1 <= sample_size <= population_size, got sample_size="
                       f"{self.sample_size}, population_size={self.population_size}.")

  def init(self, key: jax.Array, space: Space) -> EvolutionState:
    del key
    p, l = self.population_size, len(space)
    return EvolutionState(num_options=space.num_options, archs=jnp.zeros((p, l), jnp.int32),
                          rewards=jnp.full((p,), -jnp.inf, jnp.float32),
                          birth=jnp.full((p,), -1, jnp.int32), count=jnp.zeros((), jnp.int32))

  def ask(self, key: jax.Array, state: EvolutionState, num: int):
    k_random, k_children = jax.random.split(key)
    random = uniform(k_random, state.num_options, num)

    def child(k):
      k1, k2 = jax.random.split(k)
      idx = jax.random.choice(k1, self.population_size, (self.sample_size,), replace=False)
      parent = state.archs[idx[jnp.argmax(state.rewards[idx])]]
      return mutate(k2, parent, state.num_options)

    children = jax.vmap(child)(jax.random.split(k_children, num))
    # Child i of this batch is random while the population is not yet full.
    full = state.count >= self.population_size
    return jnp.where(full, children, random), state

  def tell(self, state: EvolutionState, archs, rewards) -> EvolutionState:
    archs, rewards = _check_tell(archs, rewards)

    def add(s, x):
      a, r = x
      slot = s.count % self.population_size
      return s.replace(archs=s.archs.at[slot].set(a), rewards=s.rewards.at[slot].set(r),
                       birth=s.birth.at[slot].set(s.count), count=s.count + 1), None

    state, _ = jax.lax.scan(add, state, (archs, rewards))
    return state


# ----------------------------------------------------------------------------------------------
# REINFORCE.


class LSTMController(nn.Module):
  """The NAS controller: an LSTM emitting one choice per step.

  The input at step 0 is a learned start vector; at step ``t`` it is the embedding of the option
  chosen at step ``t - 1``. Each choice has its own embedding table and softmax head.

  References:
    Zoph & Le 2017, "Neural Architecture Search with Reinforcement Learning" (ICLR).
  """

  num_choices: int
  max_options: int
  hidden: int = 32

  def setup(self):
    l, k, h = self.num_choices, self.max_options, self.hidden
    init = nn.initializers.uniform(0.2)
    self.cell = nn.LSTMCell(features=h)
    self.start = self.param("start", init, (h,))
    self.embed = self.param("embed", init, (l, k, h))
    self.head_w = self.param("head_w", init, (l, h, k))
    self.head_b = self.param("head_b", nn.initializers.zeros, (l, k))

  def _step(self, carry, x, t):
    carry, y = self.cell(carry, x)
    return carry, y @ self.head_w[t] + self.head_b[t]

  def _carry(self, n):
    return (jnp.zeros((n, self.hidden)), jnp.zeros((n, self.hidden)))

  def __call__(self, archs: jax.Array) -> jax.Array:
    """Teacher-forced logits [n, L, K] of ``archs`` [n, L]."""
    n = archs.shape[0]
    carry, x, out = self._carry(n), jnp.broadcast_to(self.start, (n, self.hidden)), []
    for t in range(self.num_choices):
      carry, logits = self._step(carry, x, t)
      out.append(logits)
      x = self.embed[t][archs[:, t]]
    return jnp.stack(out, axis=1)

  def sample(self, key: jax.Array, n: int, mask: jax.Array) -> jax.Array:
    """``n`` architectures [n, L] sampled step by step; ``mask`` [L, K] marks real options."""
    carry, x, out = self._carry(n), jnp.broadcast_to(self.start, (n, self.hidden)), []
    for t, k in enumerate(jax.random.split(key, self.num_choices)):
      carry, logits = self._step(carry, x, t)
      a = jax.random.categorical(k, jnp.where(mask[t], logits, _NEG)).astype(jnp.int32)
      out.append(a)
      x = self.embed[t][a]
    return jnp.stack(out, axis=1)


@flax.struct.dataclass
class ReinforceState:
  num_options: jax.Array  # int32 [L]
  params: Any  # policy parameters
  opt_state: Any  # optax Adam state
  baseline: jax.Array  # float32 []: exponential moving average of the rewards
  count: jax.Array  # int32 []: architectures told so far


@register(name="reinforce")
@dataclasses.dataclass(frozen=True)
class Reinforce:
  """REINFORCE on a policy over architectures, with a moving-average baseline.

  ``tell`` takes one Adam step on ``-mean((r - b) * log p(arch)) - entropy_weight * H``, where
  ``b`` is the baseline before this batch (the first batch's mean reward at the start), then
  updates ``b <- baseline_decay * b + (1 - baseline_decay) * mean(r)``.

  Args:
    policy: ``"factorized"`` (independent softmax logits per choice, zero-initialised: uniform)
      or ``"lstm"`` (:class:`LSTMController`).
    learning_rate: Adam step size.
    baseline_decay: EMA decay of the baseline.
    entropy_weight: weight of the mean per-architecture entropy bonus.
    hidden: LSTM width (``policy="lstm"`` only).

  References:
    Williams 1992, "Simple Statistical Gradient-Following Algorithms for Connectionist
    Reinforcement Learning" (Machine Learning 8).
    Zoph & Le 2017, "Neural Architecture Search with Reinforcement Learning" (ICLR).
  """

  policy: str = "factorized"
  learning_rate: float = 0.1
  baseline_decay: float = 0.9
  entropy_weight: float = 0.0
  hidden: int = 32

  def __post_init__(self):
    if self.policy not in ("factorized", "lstm"):
      raise ValueError(f"Unknown policy {self.policy!r}. Known policies: factorized, lstm.")
    if not 0.0 <= self.baseline_decay <= 1.0:
      raise ValueError(f"baseline_decay must lie in [0, 1], got {self.baseline_decay}.")

  def _optimizer(self):
    return optax.adam(self.learning_rate)

  def _controller(self, num_choices: int, max_options: int) -> LSTMController:
    """The LSTM policy module (a subclass may transform its logits, e.g. ENAS)."""
    return LSTMController(num_choices, max_options, self.hidden)

  def init(self, key: jax.Array, space: Space) -> ReinforceState:
    num_options = space.num_options
    k = max(len(space.options(n)) for n in space.names)
    if self.policy == "factorized":
      params = {"logits": jnp.zeros((len(space), k), jnp.float32)}
    else:
      ctl = self._controller(len(space), k)
      params = ctl.init(key, jnp.zeros((1, len(space)), jnp.int32))["params"]
    return ReinforceState(num_options=num_options, params=params,
                          opt_state=self._optimizer().init(params),
                          baseline=jnp.zeros((), jnp.float32), count=jnp.zeros((), jnp.int32))

  @staticmethod
  def _max_options_of(params) -> int:
    return (params["logits"] if "logits" in params else params["head_b"]).shape[-1]

  def _mask(self, params, num_options):
    k = self._max_options_of(params)
    return jnp.arange(k)[None, :] < num_options[:, None]

  def logits(self, params, num_options: jax.Array, archs: jax.Array) -> jax.Array:
    """Masked policy logits [n, L, K] (teacher-forced on ``archs`` for the LSTM)."""
    mask = self._mask(params, num_options)
    if self.policy == "factorized":
      raw = jnp.broadcast_to(params["logits"], (archs.shape[0],) + params["logits"].shape)
    else:
      ctl = self._controller(num_options.shape[0], self._max_options_of(params))
      raw = ctl.apply({"params": params}, archs)
    return jnp.where(mask, raw, _NEG)

  def log_prob(self, params, num_options: jax.Array, archs: jax.Array) -> jax.Array:
    """log p(arch) [n] under the policy."""
    logp = jax.nn.log_softmax(self.logits(params, num_options, archs), axis=-1)
    return jnp.take_along_axis(logp, archs[..., None], axis=-1)[..., 0].sum(-1)

  def entropy(self, params, num_options: jax.Array, archs: jax.Array) -> jax.Array:
    """Sum over choices of the per-step entropies [n] (conditional on ``archs`` for the LSTM)."""
    logits = self.logits(params, num_options, archs)
    p = jax.nn.softmax(logits, axis=-1)
    return -(p * jax.nn.log_softmax(logits, axis=-1)).sum((-2, -1))

  def ask(self, key: jax.Array, state: ReinforceState, num: int):
    mask = self._mask(state.params, state.num_options)
    if self.policy == "factorized":
      logits = jnp.where(mask, state.params["logits"], _NEG)
      archs = jax.random.categorical(key, logits, axis=-1, shape=(num, logits.shape[0]))
    else:
      ctl = self._controller(state.num_options.shape[0], self._max_options_of(state.params))
      archs = ctl.apply({"params": state.params}, key, num, mask, method=LSTMController.sample)
    return archs.astype(jnp.int32), state

  def tell(self, state: ReinforceState, archs, rewards) -> ReinforceState:
    archs, rewards = _check_tell(archs, rewards)
    mean = rewards.mean()
    baseline = jnp.where(state.count == 0, mean, state.baseline)
    advantage = jax.lax.stop_gradient(rewards - baseline)

    def loss(params):
      logp = self.log_prob(params, state.num_options, archs)
      bonus = self.entropy(params, state.num_options, archs).mean() if self.entropy_weight else 0.0
      return -(advantage * logp).mean() - self.entropy_weight * bonus

    grads = jax.grad(loss)(state.params)
    updates, opt_state = self._optimizer().update(grads, state.opt_state, state.params)
    d = self.baseline_decay
    return state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state,
                         baseline=d * baseline + (1 - d) * mean,
                         count=state.count + archs.shape[0])


# ----------------------------------------------------------------------------------------------
# ENAS's controller (jaxcnn.search.enas builds on Reinforce, so it is imported when asked for).


@register(name="enas")
def _enas(**kwargs: Any) -> Any:
  """:class:`jaxcnn.search.enas.ENAS`, REINFORCE with ENAS's LSTM settings (Pham et al. 2018)."""
  from jaxcnn.search.enas import ENAS  # pylint: disable=g-import-not-at-top
  known = [f.name for f in dataclasses.fields(ENAS)]
  unknown = sorted(set(kwargs) - set(known))
  if unknown:
    raise ValueError(f"Unknown arguments {unknown} for search strategy 'enas'. Known: "
                     f"{', '.join(known)}.")
  return ENAS(**kwargs)


@register(name="darts")
def _darts(**kwargs: Any) -> Any:
  """:class:`jaxcnn.search.darts.DARTS`: the cell DARTS derives (its ``tell`` points to
  ``darts.search``, the gradient driver; Liu et al. 2019)."""
  from jaxcnn.search.darts import DARTS  # pylint: disable=g-import-not-at-top
  return DARTS(**kwargs)
