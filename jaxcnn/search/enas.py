"""ENAS: an LSTM controller and the supernet's shared weights, trained in alternation.

ENAS (Pham et al. 2018) alternates two phases: (1) the shared weights ``w`` of the supernet are
trained by SGD, each step on one architecture sampled from the current policy; (2) the controller
is trained by REINFORCE on the accuracy of its samples on validation data, computed with the
shared weights. That fits the ask/tell loop of :func:`jaxcnn.search.run` once the *evaluator*
owns the shared weights:

* :class:`ENAS` (``search.strategies.get("enas")``) is the REINFORCE LSTM controller with the
  paper's settings;
* :class:`SharedTraining` is the evaluator: each call trains ``w`` for ``train_steps`` steps on
  the asked architectures (phase 1), then returns their validation accuracies with the updated
  weights (the phase 2 rewards);
* :func:`search` runs :func:`jaxcnn.search.run` and saves the shared weights beside the
  controller, so a stopped search resumes exactly; :func:`final` derives the result (the
  controller's greedy architecture and the best of its samples under the shared weights).

Example (the 256-cell :data:`~jaxcnn.search.nasbench201.SMALL` space on the offline digits; 3
minutes on a busy 2-core CPU)::

  source = sources.InMemory(sources.subsets("digits", {"train": 1200, "val": 300}, seed=0))
  trainer = enas.SharedTraining(search.SuperNet(num_cells=1, channels=8),
                                optax.sgd(0.05, momentum=0.9, nesterov=True), source,
                                train_steps=10, batch_size=32, subspace=nb.SMALL,
                                preprocess=lambda x: x / 255.0)
  strategy = search.strategies.get("enas", learning_rate=0.01)
  result = enas.search(nb.SMALL.space, strategy, trainer, budget=300, key=jax.random.PRNGKey(0),
                       batch_size=10, workdir="runs/enas")
  best = enas.final(strategy, result.state, trainer, jax.random.PRNGKey(1), num_samples=50)
  best.greedy, best.archs[0], best.rewards[0]

The NASNet cell space works the same way with :class:`jaxcnn.search.nasnet.SuperNet` over an op
subset (ENAS's micro search, Section 2.3); its weights are best initialised eagerly (a jitted
init of every op compiles for minutes on a CPU)::

  supernet = nasnet.SuperNet(num_cells=1, penultimate_filters=96, stem_features=8,
                             cell_ops=nasnet.ENAS_OPS)
  variables = supernet.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)), train=False)
  trainer = enas.SharedTraining(supernet, tx, source, train_steps=10, batch_size=32,
                                subspace=nasnet.Subspace(nasnet.ENAS_OPS), variables=variables,
                                preprocess=lambda x: x / 16.0)
  result = enas.search(trainer.space, strategy, trainer, budget=200, key=key, batch_size=10)

References:
  Pham, Guan, Zoph, Le & Dean 2018, "Efficient Neural Architecture Search via Parameter
  Sharing" (ICML), Sections 2.2 (training and deriving architectures) and 3.2 (settings).
  Dong & Yang 2020, "NAS-Bench-201", Section 5 (ENAS on this cell space).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.data.sources import default_mesh, put, replicated
from jaxcnn.nn import conv as conv_lib
from jaxcnn.search import evaluators, strategies
from jaxcnn.search import supernet as sn
from jaxcnn.search.run import STATE_FILE, Result, _compiled, load_state, run, save_state
from jaxcnn.search.space import Space
from jaxcnn.train.state import TrainState, make_init, state_from_variables
from jaxcnn.train.steps import cross_entropy

WEIGHTS_FILE = "shared_weights_{}.npz"  # the evaluator's state after that many calls


# ----------------------------------------------------------------------------------------------
# The controller.


class ENASController(strategies.LSTMController):
  """The LSTM controller with ENAS's logits: ``tanh_constant * tanh(logits / temperature)``.

  References: Pham et al. 2018, Section 3.2 (after Bello et al. 2017); ``tanh_constant=None``
  leaves the tempered logits unbounded.
  """

  temperature: float = 5.0
  tanh_constant: float | None = 2.5

  def _step(self, carry, x, t):
    carry, logits = super()._step(carry, x, t)
    logits = logits / self.temperature
    if self.tanh_constant is not None:
      logits = self.tanh_constant * jnp.tanh(logits)
    return carry, logits


@dataclasses.dataclass(frozen=True)
class ENAS(strategies.Reinforce):
  """ENAS's controller: REINFORCE on an LSTM policy with ENAS's settings (Section 3.2).

  :class:`~jaxcnn.search.strategies.Reinforce` with ``policy="lstm"``, the logits of
  :class:`ENASController` (temperature 5, tanh constant 2.5), parameters initialised uniformly
  in ``[-0.1, 0.1]``, Adam at 3.5e-4, and the sample
  entropy added to the reward with weight 0.1: ``tell`` trains on
  ``r + entropy_reward * H(arch)``, ``H`` the sum of the entropies of the controller's
  per-choice distributions along the sampled architecture. The moving-average baseline decays
  by ``baseline_decay`` (the paper gives no value; 0.99 here). The other fields are
  :class:`~jaxcnn.search.strategies.Reinforce`'s (``entropy_weight``, its loss bonus, is off).

  Args:
    learning_rate: Adam step size of the controller.
    baseline_decay: decay of the reward's moving average.
    hidden: LSTM width (the paper: 100).
    entropy_reward: weight of the sample entropy added to the reward.
    temperature: the logits are divided by it (> 0).
    tanh_constant: then squashed to ``[-tanh_constant, tanh_constant]`` (None: no squashing).

  References:
    Pham et al. 2018, "Efficient Neural Architecture Search via Parameter Sharing", Section 3.2.
  """

  policy: str = "lstm"
  learning_rate: float = 3.5e-4
  baseline_decay: float = 0.99
  entropy_weight: float = 0.0
  hidden: int = 100
  entropy_reward: float = 0.1
  temperature: float = 5.0
  tanh_constant: float | None = 2.5

  def __post_init__(self):
    super().__post_init__()
    if self.policy != "lstm":
      raise ValueError(f"ENAS's controller is an LSTM: policy must be 'lstm', got {self.policy!r}.")
    if not self.temperature > 0:
      raise ValueError(f"temperature must be > 0, got {self.temperature}.")
    if self.tanh_constant is not None and not self.tanh_constant > 0:
      raise ValueError(f"tanh_constant must be > 0 or None, got {self.tanh_constant}.")

  def init(self, key: jax.Array, space: Space) -> strategies.ReinforceState:
    """Every controller parameter drawn uniformly in ``[-0.1, 0.1]`` (Section 3.2)."""
    ctl = self._controller(len(space), max(len(space.options(n)) for n in space.names))
    shapes = jax.eval_shape(ctl.init, key, jnp.zeros((1, len(space)), jnp.int32))["params"]
    leaves, treedef = jax.tree.flatten(shapes)
    sizes = [int(np.prod(leaf.shape)) for leaf in leaves]
    flat = np.asarray(jax.random.uniform(key, (sum(sizes),), jnp.float32, -0.1, 0.1))
    chunks = np.split(flat, np.cumsum(sizes)[:-1])  # one draw, cut into the leaves
    params = jax.tree.unflatten(treedef, [jnp.asarray(c.reshape(leaf.shape))
                                          for c, leaf in zip(chunks, leaves)])
    return strategies.ReinforceState(
        num_options=space.num_options, params=params, opt_state=self._optimizer().init(params),
        baseline=jnp.zeros((), jnp.float32), count=jnp.zeros((), jnp.int32))

  def _controller(self, num_choices: int, max_options: int) -> ENASController:
    return ENASController(num_choices, max_options, self.hidden, temperature=self.temperature,
                          tanh_constant=self.tanh_constant)

  def tell(self, state: strategies.ReinforceState, archs, rewards) -> strategies.ReinforceState:
    archs, rewards = strategies._check_tell(archs, rewards)  # pylint: disable=protected-access
    if self.entropy_reward:
      entropy = self.entropy(state.params, state.num_options, archs)
      rewards = rewards + self.entropy_reward * jax.lax.stop_gradient(entropy)
    return super().tell(state, archs, rewards)


@functools.lru_cache(maxsize=16)
def _greedy_fn(strategy: strategies.Reinforce) -> Callable[[Any, jax.Array], jax.Array]:
  def greedy(params, num_options):
    def choose(t, arch):  # the logits of step t depend on arch[:, :t] only
      logits = strategy.logits(params, num_options, arch)[0]
      return arch.at[0, t].set(jnp.argmax(logits[t]).astype(jnp.int32))

    size = num_options.shape[0]
    return jax.lax.fori_loop(0, size, choose, jnp.zeros((1, size), jnp.int32))[0]

  return jax.jit(greedy)


def greedy(strategy: strategies.Reinforce, state: strategies.ReinforceState) -> np.ndarray:
  """The controller's greedy decode, int32 [L]: at each step its most likely option given the
  options chosen before (for a factorized policy, the most likely architecture)."""
  return np.asarray(_greedy_fn(strategy)(state.params, state.num_options))


# ----------------------------------------------------------------------------------------------
# The shared weights: an evaluator that trains them.


@functools.lru_cache(maxsize=16)
def _train_step(supernet: Any, tx: optax.GradientTransformation,
                preprocess: Callable[[jax.Array], jax.Array]):
  """One jitted SGD step of the supernet on the path of a traced arch (int32 [L])."""

  def step(state: TrainState, batch: dict[str, jax.Array], arch: jax.Array):
    x, labels = preprocess(batch["image"]), batch["label"]

    def loss_fn(params):
      logits, updates = supernet.apply({"params": params, "batch_stats": state.batch_stats}, x,
                                       arch, train=True, mutable=["batch_stats"])
      return cross_entropy(logits, labels).mean(), updates["batch_stats"]

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         batch_stats=batch_stats, opt_state=opt_state), loss

  return conv_lib.jit(step, donate_argnums=0)


@functools.lru_cache(maxsize=16)
def _init_fn(supernet: Any, tx: optax.GradientTransformation, input_shape: tuple):
  return make_init(supernet, tx, input_shape)


def _as_float(x: jax.Array) -> jax.Array:
  return x.astype(jnp.float32)


class SharedTraining(evaluators.Evaluator):
  """ENAS's alternation as an evaluator: train the shared weights on the asked archs, score them.

  Each call ``evaluate(archs)`` (``n`` architectures) first takes ``train_steps`` SGD steps on the
  supernet's shared weights, step ``i`` on a training batch along the path of ``archs[i % n]``
  (ENAS phase 1: ``w`` trained on architectures sampled from the current policy; ask
  ``train_steps`` architectures per batch for the paper's one fresh sample per step), then
  returns every architecture's accuracy on ``split`` with the updated weights, as
  :class:`~jaxcnn.search.evaluators.SharedWeights` computes it (the phase 2 reward; a small
  ``split`` plays the paper's validation minibatch). Training batches follow the population
  trainer's order for ``seed`` (batch ``s`` of the run is batch ``s % steps_per_epoch`` of epoch
  ``s // steps_per_epoch``), so the state (:attr:`state`: weights, optimizer state, steps done)
  fixes what comes next. Ops never on a trained path keep their initial weights, unless ``tx``
  changes weights without a gradient (decoupled weight decay does).

  Args:
    supernet: a module called as ``supernet(x, arch, train=...)`` that declares the space of
      its architectures (:func:`~jaxcnn.search.supernet.arch_space`): the NAS-Bench-201
      :class:`~jaxcnn.search.supernet.SuperNet` (int32 [6]; a module without ``space`` is taken
      as one) or :class:`~jaxcnn.search.nasnet.SuperNet` (int32 [50]).
    tx: the optax chain of the shared weights (the paper: SGD with Nesterov momentum, cosine
      schedule).
    source: a :mod:`jaxcnn.data.sources` source with a training split and ``split``.
    train_steps: SGD steps per call (>= 1).
    batch_size: training examples per step.
    subspace: a subspace of the supernet's space whose architectures are asked (``.space``,
      ``.to_full(archs)``: :class:`~jaxcnn.search.nasbench201.Subspace`,
      :class:`~jaxcnn.search.nasnet.Subspace`); None: the supernet's whole space.
    seed: the weights' initialisation and the data order.
    variables: initial shared weights ``{"params", "batch_stats"}`` (e.g. from
      :func:`~jaxcnn.search.evaluators.train_supernet`, a one-shot warm start; copied); None
      draws them from ``seed``.
    split: the split of the rewards.
    preprocess: applied to the images (default: cast to float32).
    mode: how children are scored, as in :class:`~jaxcnn.search.evaluators.SharedWeights`.

  Attributes:
    state: the :class:`~jaxcnn.train.state.TrainState` of the shared weights.
    calls: evaluations done (the search steps this state has seen).
    workdir: where :func:`search` has the state saved after every call (None: not saved).
  """

  def __init__(self, supernet: Any, tx: optax.GradientTransformation, source: Any, *,
               train_steps: int, batch_size: int, subspace: Any = None,
               seed: int = 0, variables: Any = None, split: str = "val",
               preprocess: Callable[[jax.Array], jax.Array] | None = None, mode: str = "auto"):
    if train_steps < 1 or batch_size < 1:
      raise ValueError(f"Need train_steps >= 1 and batch_size >= 1, got {train_steps} and "
                       f"{batch_size}.")
    self.supernet, self.tx, self.source = supernet, tx, source
    self.train_steps, self.batch_size = int(train_steps), int(batch_size)
    self.subspace, self.seed, self.split = subspace, int(seed), split
    self.space = subspace.space if subspace is not None else sn.arch_space(supernet)
    self.preprocess = preprocess or _as_float
    self.steps_per_epoch = source.steps_per_epoch(self.batch_size)
    self._step = _train_step(supernet, tx, self.preprocess)
    model_key, data_key = jax.random.split(jax.random.PRNGKey(self.seed))
    self.data_keys = data_key[None]  # one model's data order, as in the population trainer
    self._replicated = replicated(getattr(source, "mesh", None) or default_mesh())
    if variables is None:
      state = _init_fn(supernet, tx, tuple(source.input_shape))(model_key)
    else:  # the step rng a fresh init would draw (unused: the path is the step's input)
      state = state_from_variables(tx, jax.tree.map(jnp.array, dict(variables)),
                                   jax.random.split(model_key, 3)[2])
    self.state: TrainState = self._place(state)
    self.calls = 0
    self.workdir: Path | None = None
    self.scorer = evaluators.SharedWeights(supernet, self.variables, source, split=split,
                                           preprocess=self.preprocess, mode=mode)

  def _place(self, state: TrainState) -> TrainState:
    # Replicated on the source's mesh, where the step leaves it: one compilation of the step.
    return jax.tree.map(lambda x: put(x, self._replicated), state)

  @property
  def variables(self) -> dict[str, Any]:
    """The shared weights: ``{"params", "batch_stats"}`` of the supernet."""
    return {"params": self.state.params, "batch_stats": self.state.batch_stats}

  def _full(self, archs: Any) -> np.ndarray:
    a = self.space.validate(archs)
    if a.ndim != 2:
      raise ValueError(f"archs must be int [n, {len(self.space)}], got shape {a.shape}.")
    if self.subspace is None:
      return a
    return sn.arch_space(self.supernet).validate(self.subspace.to_full(a))  # built by the supernet

  def _batches(self, start: int, stop: int) -> Iterator[dict[str, jax.Array]]:
    while start < stop:
      epoch, position = divmod(start, self.steps_per_epoch)
      end = min(self.steps_per_epoch, position + stop - start)
      for batch in self.source.train_batches(self.data_keys, epoch, position, end,
                                             self.batch_size):
        if batch["label"].ndim == 2:  # a batch per model (of one): drop the model axis
          batch = {k: v[0] for k, v in batch.items()}
        yield batch
      start += end - position

  def train(self, archs: Any, num_steps: int | None = None) -> np.ndarray:
    """Trains the shared weights ``num_steps`` (default ``train_steps``) steps, step ``i`` on
    ``archs[i % n]``; returns the training losses, float32 [num_steps]."""
    full = self._full(archs)
    num_steps = self.train_steps if num_steps is None else int(num_steps)
    start = int(self.state.step)
    losses = []
    for i, batch in enumerate(self._batches(start, start + num_steps)):
      self.state, loss = self._step(self.state, batch, jnp.asarray(full[i % len(full)]))
      losses.append(loss)
    return np.asarray(jax.device_get(losses), np.float32).reshape(-1)

  def score(self, archs: Any) -> tuple[np.ndarray, evaluators.Metrics]:
    """Accuracies and losses on ``split`` with the current shared weights (no training)."""
    self.scorer.variables = self.variables
    return self.scorer.evaluate(self._full(archs))

  def evaluate(self, archs: Any) -> tuple[np.ndarray, evaluators.Metrics]:
    archs = self.space.validate(archs)
    losses = self.train(archs)
    rewards, metrics = self.score(archs)
    n = len(archs)  # each architecture's mean training loss in this call (NaN: not trained)
    trained = [losses[i::n] for i in range(n)]
    metrics["train_loss"] = np.asarray([t.mean() if t.size else np.nan for t in trained],
                                       np.float32)
    self.calls += 1
    if self.workdir is not None:
      self.save(self.workdir)
    return rewards, metrics

  # ---------------------------------------------------------------------------------------------
  # Saving.

  def _meta(self) -> str:
    return json.dumps({"supernet": repr(self.supernet), "space": repr(self.space),
                       "train_steps": self.train_steps, "batch_size": self.batch_size,
                       "seed": self.seed, "split": self.split})

  def save(self, workdir: Any) -> Path:
    """Writes the state to ``workdir/shared_weights_<calls>.npz``, keeping the previous call's
    file too (a search stopped between the two saves resumes from it); returns the path."""
    workdir = Path(workdir)
    path = workdir / WEIGHTS_FILE.format(self.calls)
    save_state(path, self.state, step=self.calls, num_evaluated=int(self.state.step),
                       meta=self._meta())
    (workdir / WEIGHTS_FILE.format(self.calls - 2)).unlink(missing_ok=True)
    return path

  def load(self, workdir: Any, calls: int) -> None:
    """Restores the state saved after ``calls`` evaluations (``calls=0``: needs a fresh one).

    Raises:
      ValueError naming the file when it is missing, damaged or from another configuration.
    """
    if calls == 0:
      if self.calls:
        raise ValueError(f"This evaluator has done {self.calls} evaluations; a search from the "
                         "start needs a fresh SharedTraining.")
      return
    path = Path(workdir) / WEIGHTS_FILE.format(calls)
    if not path.exists():
      raise ValueError(f"The search in {workdir} is at step {calls}, but {path.name} (its shared "
                       "weights) is missing.")
    state, saved_calls, _ = load_state(path, self.state, meta=self._meta())
    self.state = self._place(state)
    if saved_calls != calls:
      raise ValueError(f"{path} holds the state after {saved_calls} calls, expected {calls}.")
    self.calls = calls


# ----------------------------------------------------------------------------------------------
# The search and its result.


def search(space: Space, strategy: Any, evaluator: SharedTraining, budget: int, key: jax.Array,
           workdir: Any = None, batch_size: int = 1, top_k: int = 5,
           progress: bool = True) -> Result:
  """:func:`jaxcnn.search.run` with the shared weights saved and restored beside the controller.

  Each step asks ``batch_size`` architectures of the controller, trains the shared weights on
  them and scores them (``evaluator``), and tells the controller. With a ``workdir`` the
  evaluator saves its state after every call and a saved search resumes where it stopped: the
  same ``key`` gives the same search, and a resumed search equals an uninterrupted one.
  Arguments as in :func:`jaxcnn.search.run`; ``space`` must be ``evaluator.space``.
  """
  if space != evaluator.space:
    raise ValueError(f"The search space {space!r} is not the evaluator's {evaluator.space!r}.")
  if workdir is not None:
    workdir = Path(workdir)
    state_path = workdir / STATE_FILE
    step = 0
    if state_path.exists():
      try:
        with np.load(state_path, allow_pickle=False) as f:
          step = int(f["step"])
      except Exception as e:  # damaged: say so here, as run would
        raise ValueError(f"Cannot read search state {state_path}: {type(e).__name__}: "
                         f"{e}") from None
    evaluator.load(workdir, step)
    workdir.mkdir(parents=True, exist_ok=True)
  evaluator.workdir = workdir
  try:
    return run(space, strategy, evaluator, budget, key, workdir=workdir,
                       batch_size=batch_size, top_k=top_k, progress=progress)
  finally:
    evaluator.workdir = None


@dataclasses.dataclass
class Final:
  """What :func:`final` derives from a search.

  Attributes:
    greedy: int32 [L], the controller's greedy decode.
    greedy_reward: its accuracy with the shared weights.
    archs: int32 [k, L], the best distinct candidates by shared-weight accuracy, best first.
    rewards: float32 [k], their accuracies.
  """

  greedy: np.ndarray
  greedy_reward: float
  archs: np.ndarray
  rewards: np.ndarray


def final(strategy: strategies.Reinforce, state: strategies.ReinforceState,
          evaluator: SharedTraining, key: jax.Array, num_samples: int = 100,
          top_k: int = 5) -> Final:
  """ENAS's deriving step: ``num_samples`` architectures sampled from the trained controller
  (and its greedy decode) scored with the shared weights, without training; the best ``top_k``.

  References: Pham et al. 2018, Section 2.2, "Deriving Architectures".
  """
  if num_samples < 0 or top_k < 1:
    raise ValueError(f"Need num_samples >= 0 and top_k >= 1, got {num_samples} and {top_k}.")
  best = greedy(strategy, state)
  ask, _ = _compiled(strategy)  # pylint: disable=protected-access
  sampled = np.asarray(ask(key, state, num_samples)[0]) if num_samples else best[None][:0]
  # pylint: disable-next=protected-access
  candidates, _ = evaluators._unique(np.concatenate([best[None], sampled]))
  rewards, _ = evaluator.score(candidates)
  order = np.argsort(-rewards, kind="stable")[:top_k]
  return Final(greedy=best, greedy_reward=float(rewards[0]), archs=candidates[order],
               rewards=rewards[order])
