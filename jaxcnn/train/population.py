"""The population trainer: a stack of models trained as one compiled program.

Every training run in jaxcnn is a population of ``M`` models of one architecture: seeds, values
of a hyperparameter (held in each model's optimizer state, :func:`jaxcnn.train.optim.make_optimizer`),
or any models that differ only in traced values (their initial variables). One jitted step
trains them all (``jax.vmap`` on GPU/TPU, a loop inside the step on CPU:
:func:`jaxcnn.train.steps.over_models`; a population of one runs the plain step), so a seed
sweep, a learning-rate grid or a batch of search candidates of one shape costs one compilation::

  pop = Population(model, tx, num_models=3, preprocess=transform)
  state, data_keys = pop.init(seeds=[0, 1, 2], input_shape=(8, 8, 1))
  state, history = pop.train(state, data_keys, source, num_steps=400, batch_size=32,
                             eval_every=50)
  history["val_accuracy"]          # (evaluations, 3)

:meth:`Population.steps` is the one step loop (epochs, batches from a source, the step); both
:meth:`Population.train` (a step budget with an eval schedule, for studies and search) and
:func:`jaxcnn.train.loop.fit` (epochs, checkpoints, a run folder) consume it.

Model ``m``'s seed gives its initial variables, its per-step randomness and its data order:
``jax.random.split(PRNGKey(seed))`` is ``(model key, data key)``.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from tqdm import tqdm

from jaxcnn.data.sources import default_mesh, put, replicated
from jaxcnn.train.lookahead import Lookahead
from jaxcnn.train.optim import set_hyperparams
from jaxcnn.train.state import TrainState, make_init, state_from_variables
from jaxcnn.train.steps import make_eval_step, make_train_step

Measure = Callable[[TrainState], Mapping[str, Any]]


class NonFiniteLossError(FloatingPointError):
  """The loss (or the parameters) became NaN or infinite; the run stopped."""


def check_finite(losses: np.ndarray, first_step: int, labels: Sequence[str] | None = None,
                 steps_per_epoch: int | None = None) -> None:
  """Raises :class:`NonFiniteLossError` naming the first step (and model) with a NaN/inf loss.

  ``losses`` is ``(steps, models)`` for the steps ``first_step, first_step + 1, ...``; the step
  named is the 0-based index of the update whose loss was not finite.
  """
  losses = np.asarray(losses).reshape(len(losses), -1)
  bad = ~np.isfinite(losses)
  if not bad.any():
    return
  row = int(np.argmax(bad.any(axis=1)))
  model = int(np.argmax(bad[row]))
  which = f", model {model} ({labels[model]})" if labels and len(labels) > 1 else ""
  step = first_step + row
  epoch = f" (epoch {step // steps_per_epoch + 1})" if steps_per_epoch else ""
  raise NonFiniteLossError(f"Loss is {losses[row].tolist()} at step {step}{epoch}{which}.")


class Population:
  """``num_models`` copies of ``model`` trained together with one optax chain ``tx``.

  Args:
    model: a flax Module called as ``model(x, train=...)``.
    tx: the optax chain (its injected hyperparameters may differ per model).
    num_models: the size of the population (the leading axis of every state leaf).
    label_smoothing, augment, preprocess, compute_dtype, ema_decay, lookahead: as in
      :func:`jaxcnn.train.steps.make_train_step` (a lookahead's slow weights start from each
      model's initial variables).
    shared_batch: every model trains on the same batch (a source with ``shared_order``, or a
      stream).
    mesh: the data-parallel mesh (default: all devices); the state is replicated on it.
  """

  def __init__(self, model: nn.Module, tx: optax.GradientTransformation, *, num_models: int = 1,
               label_smoothing: float = 0.0, augment: Callable[..., Any] | None = None,
               preprocess: Any = None, compute_dtype: Any = jnp.float32, ema_decay: float = 0.0,
               lookahead: Lookahead | None = None, shared_batch: bool = False,
               mesh: Mesh | None = None):
    if int(num_models) < 1:
      raise ValueError(f"num_models must be >= 1, got {num_models}.")
    self.model, self.tx, self.num_models = model, tx, int(num_models)
    self.mesh = mesh or default_mesh()
    self.ema = ema_decay > 0
    self.lookahead = lookahead
    self.shared_batch = shared_batch
    self.train_step = make_train_step(
        model, tx, label_smoothing=label_smoothing, augment=augment, preprocess=preprocess,
        compute_dtype=compute_dtype, ema_decay=ema_decay, lookahead=lookahead,
        num_models=self.num_models,
        shared_batch=shared_batch, mesh=self.mesh)
    self.eval_step = make_eval_step(model, preprocess=preprocess, compute_dtype=compute_dtype,
                                    num_models=self.num_models, mesh=self.mesh)
    self.compile_time_s = 0.0
    self._compiled: dict[int, Any] = {}  # batch size -> the compiled train step
    self._inits: dict[tuple[int, ...], Any] = {}  # input shape -> the jitted stacked init
    self._state_from = jax.jit(jax.vmap(self._fresh_state))

  # ------------------------------------------------------------------------------------------
  # State.

  def init(self, seeds: Sequence[int], input_shape: Sequence[int], *,
           hyperparams: Mapping[str, Any] | None = None,
           variables: Any = None) -> tuple[TrainState, jax.Array]:
    """The stacked initial state and the ``(M, 2)`` data keys of models with these seeds.

    Args:
      seeds: one integer seed per model.
      input_shape: the shape of one example, e.g. ``(32, 32, 3)``.
      hyperparams: per-model values of the optimizer's injected hyperparameters, e.g.
        ``{"learning_rate": [0.01, 0.1]}``.
      variables: initial ``{"params", "batch_stats"}`` stacked over models (e.g. after LSUV);
        None draws them from each model's key.
    """
    if len(seeds) != self.num_models:
      raise ValueError(f"{len(seeds)} seeds for a population of {self.num_models} models.")
    keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
    model_keys, data_keys = jax.vmap(jax.random.split, out_axes=1)(keys)
    if variables is None:
      shape = tuple(int(d) for d in input_shape)
      if shape not in self._inits:
        self._inits[shape] = make_init(self.model, self.tx, shape, ema=self.ema,
                                       lookahead=self.lookahead is not None, stacked=True)
      state = self._inits[shape](model_keys)
    else:
      state = self.state_from(variables, model_keys)
    if hyperparams:
      values = {k: np.broadcast_to(np.asarray(v, np.float32), (self.num_models,))
                for k, v in hyperparams.items()}
      state = state.replace(opt_state=set_hyperparams(state.opt_state, **values))
    rep = replicated(self.mesh)
    return jax.tree.map(lambda x: put(x, rep), state), put(data_keys, rep)

  def state_from(self, variables: Any, model_keys: jax.Array) -> TrainState:
    """A fresh stacked state around given stacked variables (optimizer state from ``tx.init``)."""
    return self._state_from(dict(variables), model_keys)

  def _fresh_state(self, variables: Any, key: jax.Array) -> TrainState:
    # The step rng a fresh init would draw from this model key (make_init splits it in three).
    return state_from_variables(self.tx, variables, jax.random.split(key, 3)[2], ema=self.ema,
                                lookahead=self.lookahead is not None)

  # ------------------------------------------------------------------------------------------
  # Steps.

  def _step_for(self, state: TrainState, batch: Mapping[str, jax.Array]) -> Any:
    """The train step compiled ahead of time for this batch size (timed once per size)."""
    size = batch["label"].shape[-1]
    if size not in self._compiled:
      t0 = time.perf_counter()
      self._compiled[size] = self.train_step.lower(state, batch).compile()
      self.compile_time_s += time.perf_counter() - t0
    return self._compiled[size]

  def steps(self, state: TrainState, data_keys: jax.Array, source: Any, *, batch_size: int,
            start: int, stop: int, steps_per_epoch: int | None = None
            ) -> Iterator[tuple[TrainState, dict[str, jax.Array]]]:
    """Runs the updates ``start .. stop - 1``, yielding ``(state, metrics)`` after each.

    The batches of step ``s`` are batch ``s % steps_per_epoch`` of epoch
    ``s // steps_per_epoch`` of ``source`` (default: one pass over its training split), so a
    run resumed at ``start`` sees what an uninterrupted one would. Nothing here waits for the
    device: metrics stay device arrays until the caller reads them. The state passed in is
    donated to the step; use only the yielded one.
    """
    steps_per_epoch = steps_per_epoch or source.steps_per_epoch(batch_size)
    step, batches = start, None
    while step < stop:
      epoch, position = divmod(step, steps_per_epoch)
      if position == 0 or batches is None:
        end = min(steps_per_epoch, position + stop - step)
        batches = source.train_batches(data_keys, epoch, position, end, batch_size)
      batch = next(batches)
      state, metrics = self._step_for(state, batch)(state, batch)
      step += 1
      if step % steps_per_epoch == 0:
        batches = None
      yield state, metrics

  def evaluate(self, state: TrainState, source: Any, split: str) -> dict[str, np.ndarray]:
    """Mean ``loss`` and ``accuracy`` of every model on ``split``: arrays of shape ``(M,)``."""
    totals = None
    for batch in source.eval_batches(split):
      sums = self.eval_step(state, batch)
      totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    if totals is None:
      raise ValueError(f"Split {split!r} is empty.")
    totals = jax.device_get(totals)
    return {"loss": np.asarray(totals["loss"] / totals["count"], np.float64),
            "accuracy": np.asarray(totals["correct"] / totals["count"], np.float64)}

  # ------------------------------------------------------------------------------------------
  # A step budget with an evaluation schedule.

  def train(self, state: TrainState, data_keys: jax.Array, source: Any, *, num_steps: int,
            batch_size: int, eval_every: int = 0, eval_splits: Sequence[str] | None = None,
            eval_at_start: bool = False, measure: Measure | None = None,
            labels: Sequence[str] | None = None, stop_on_nonfinite: bool = True,
            steps_per_epoch: int | None = None,
            progress: bool = False) -> tuple[TrainState, dict[str, np.ndarray]]:
    """Trains for ``num_steps`` updates and evaluates every ``eval_every`` steps and at the end.

    Args:
      state, data_keys: from :meth:`init`.
      source: a :mod:`jaxcnn.data.sources` source.
      num_steps: the step budget.
      batch_size: examples per model per step.
      eval_every: evaluate after every this many steps (0: only at the end).
      eval_splits: the splits to evaluate (default: the source's ``eval_splits``).
      eval_at_start: evaluate the initial state as well (step 0).
      measure: ``fn(state) -> {name: (M, ...) array}`` recorded at every evaluation (e.g.
        dead-unit fractions from :mod:`jaxcnn.diagnostics`).
      labels: model names for error messages.
      steps_per_epoch: a shortened epoch (default: one pass over the training split), as
        ``config.steps_per_epoch`` of :func:`jaxcnn.train.loop.fit`.
      stop_on_nonfinite: raise on a NaN/inf loss; False records it instead (a diverged model's
        losses and evaluations are then NaN/inf; the other models train on unaffected, e.g. the
        large learning rates of a sweep).
      progress: a progress bar of the steps on stderr, named by the first label (updated once a
        minute when stderr is not a terminal).

    Returns:
      The final state and a history of host arrays: ``train_loss``, ``train_accuracy`` and
      ``grad_norm`` of every step ``(num_steps, M)``; ``eval_steps`` ``(E,)``; ``{split}_loss``
      and ``{split}_accuracy`` ``(E, M)``; each measured name ``(E, M, ...)``; ``seconds`` (wall
      time, compilation included) and ``compile_time_s``.
    Raises:
      NonFiniteLossError: a loss became NaN/inf (checked at every evaluation) and
        ``stop_on_nonfinite``.
    """
    t0 = time.perf_counter()
    splits = list(source.eval_splits if eval_splits is None else eval_splits)
    per_step: dict[str, list[np.ndarray]] = {}
    evals: dict[str, list[Any]] = {"eval_steps": []}

    def evaluate(step: int) -> None:
      evals["eval_steps"].append(step)
      for split in splits:
        for name, value in self.evaluate(state, source, split).items():
          evals.setdefault(f"{split}_{name}", []).append(value)
      for name, value in (measure(state) if measure else {}).items():
        evals.setdefault(name, []).append(np.asarray(jax.device_get(value)))

    if eval_at_start:
      evaluate(0)
    pending, step = [], 0
    # Into a log file rather than a terminal, one update a minute (not 10 a second).
    with tqdm(total=num_steps, desc=labels[0] if labels else None, unit="step",
              disable=not progress, file=sys.stderr, leave=False,
              mininterval=0.1 if sys.stderr.isatty() else 60.0) as bar:
      for state, metrics in self.steps(state, data_keys, source, batch_size=batch_size, start=0,
                                       stop=num_steps, steps_per_epoch=steps_per_epoch):
        pending.append(metrics)
        step += 1
        bar.update()
        if step == num_steps or (eval_every and step % eval_every == 0):
          values = jax.device_get({k: jnp.stack([m[k] for m in pending]) for k in pending[0]})
          if stop_on_nonfinite:
            check_finite(values["loss"], step - len(pending), labels)
          for k, v in values.items():
            per_step.setdefault(k, []).append(np.asarray(v, np.float64))
          pending = []
          evaluate(step)
    history = {("train_" + k if k in ("loss", "accuracy") else k): np.concatenate(v)
               for k, v in per_step.items()}
    history.update({k: np.asarray(v) for k, v in evals.items()})
    history["seconds"] = np.asarray(time.perf_counter() - t0)
    history["compile_time_s"] = np.asarray(self.compile_time_s)
    return state, history
