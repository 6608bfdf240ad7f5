"""The search loop: ask, evaluate, tell, with a history file and resumable state."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
from tqdm.auto import tqdm

from jaxcnn.search.space import Space

STATE_FILE = "search_state.npz"
HISTORY_FILE = "history.jsonl"


@dataclasses.dataclass
class Result:
  """What a search returns.

  Attributes:
    best: the top-k as ``[{"index", "arch" (option names), "indices", "reward"}]``, best first.
    best_archs: int32 [k, len(space)] of the top-k.
    best_rewards: float32 [k].
    archs: int32 [budget, len(space)], every evaluated architecture in order.
    rewards: float32 [budget], their rewards.
    history: one dict per evaluation, as written to ``history.jsonl``.
    state: the final strategy state.
  """

  best: list[dict[str, Any]]
  best_archs: np.ndarray
  best_rewards: np.ndarray
  archs: np.ndarray
  rewards: np.ndarray
  history: list[dict[str, Any]]
  state: Any


def keys_for(key: jax.Array):
  """``(init_key, loop_key)``: step ``s`` asks with ``jax.random.fold_in(loop_key, s)``."""
  init_key, loop_key = jax.random.split(key)
  return init_key, loop_key


@functools.lru_cache(maxsize=32)
def _compiled(strategy):
  """Jitted ``ask`` (``num`` static) and ``tell`` of a (hashable, frozen) strategy, reused."""
  return jax.jit(strategy.ask, static_argnums=2), jax.jit(strategy.tell)


def _meta(space: Space, strategy) -> str:
  return json.dumps({"space": repr(space), "strategy": repr(strategy)})


def save_state(path, state, *, step: int, num_evaluated: int, meta: str = "") -> None:
  """Writes a strategy state (its flattened leaves and tree structure) and the loop position."""
  leaves, treedef = jax.tree_util.tree_flatten(state)
  arrays = {f"leaf_{i}": np.asarray(x) for i, x in enumerate(leaves)}
  path = Path(path)
  tmp = path.with_name(path.name + ".tmp.npz")
  np.savez(tmp, treedef=np.asarray(str(treedef)), step=np.int64(step),
           num_evaluated=np.int64(num_evaluated), meta=np.asarray(meta), **arrays)
  os.replace(tmp, path)


def load_state(path, template, *, meta: str | None = None):
  """Reads what :func:`save_state` wrote into the structure of ``template``.

  Returns:
    ``(state, step, num_evaluated)``.

  Raises:
    ValueError naming the file when it is damaged or does not match ``template`` (or ``meta``).
  """
  leaves, treedef = jax.tree_util.tree_flatten(template)
  try:
    with np.load(path, allow_pickle=False) as f:
      data = {k: f[k] for k in f.files}
  except Exception as e:  # zip, pickle or format errors all mean a damaged file
    raise ValueError(f"Cannot read search state {path}: {type(e).__name__}: {e}") from None
  need = {"treedef", "step", "num_evaluated", "meta"} | {f"leaf_{i}" for i in range(len(leaves))}
  if not need <= set(data) or len(data) != len(need):
    raise ValueError(f"Search state {path} is damaged or from another strategy: it holds "
                     f"{len(data)} arrays, expected {len(need)}.")
  if str(data["treedef"]) != str(treedef):
    raise ValueError(f"Search state {path} has tree structure {data['treedef']}, expected {treedef}.")
  if meta is not None and str(data["meta"]) != meta:
    raise ValueError(f"Search state {path} was saved by another search: {data['meta']} != {meta}.")
  out = []
  for i, ref in enumerate(leaves):
    x, ref = data[f"leaf_{i}"], np.asarray(ref)
    if x.shape != ref.shape or x.dtype != ref.dtype:
      raise ValueError(f"Search state {path}: leaf {i} is {x.dtype}{list(x.shape)}, expected "
                       f"{ref.dtype}{list(ref.shape)}.")
    out.append(jax.numpy.asarray(x))
  return (jax.tree_util.tree_unflatten(treedef, out), int(data["step"]),
          int(data["num_evaluated"]))


def _record(space: Space, index: int, arch: np.ndarray, reward: float,
            metrics: dict[str, float] | None = None) -> dict[str, Any]:
  record = {"index": index, "arch": space.decode(arch), "indices": [int(i) for i in arch],
            "reward": float(reward), **(metrics or {})}
  # As it reads back from history.jsonl (tuples become lists, other objects their repr).
  return json.loads(json.dumps(record, default=repr))


def _read_history(path: Path, n: int) -> list[dict[str, Any]]:
  history = []
  if path.exists():
    with open(path) as f:
      for line in f:
        if line.strip():
          history.append(json.loads(line))
  if len(history) < n:
    raise ValueError(f"{path} holds {len(history)} evaluations, but the saved state has {n}.")
  return history[:n]


def run(space: Space, strategy, evaluate: Callable[[np.ndarray], Any], budget: int,
        key: jax.Array, workdir=None, batch_size: int = 1, top_k: int = 5,
        progress: bool = True) -> Result:
  """Runs ``budget`` evaluations of ask -> evaluate -> tell.

  Step ``s`` (one batch of ``batch_size``, the last one possibly smaller) asks with
  ``jax.random.fold_in(loop_key, s)``, so a search resumed from ``workdir`` equals an
  uninterrupted one. With a ``workdir`` every evaluation is appended to ``history.jsonl`` and the
  state and loop position are saved to ``search_state.npz`` after every batch; a ``workdir``
  that holds a saved search is resumed (a larger ``budget`` continues it).

  Args:
    space: the search space.
    strategy: an object with ``init/ask/tell`` (see :mod:`jaxcnn.search.strategies`).
    evaluate: ``evaluate(archs int32 [n, len(space)]) -> rewards [n]``, higher is better; an
      evaluator's ``last_metrics`` (``{name: [n]}``, see :mod:`jaxcnn.search.evaluators`), if it
      has them, are recorded beside each reward.
    budget: total number of evaluations.
    key: PRNG key of the whole search.
    workdir: folder for the history and state, or None.
    batch_size: architectures asked and evaluated together.
    top_k: how many best architectures the result lists.
    progress: show a tqdm progress bar.

  Returns:
    A :class:`Result`.
  """
  if budget < 0 or batch_size < 1:
    raise ValueError(f"Need budget >= 0 and batch_size >= 1, got {budget} and {batch_size}.")
  init_key, loop_key = keys_for(key)
  state = strategy.init(init_key, space)
  ask, tell = _compiled(strategy)
  step, done, history = 0, 0, []
  meta = _meta(space, strategy)
  state_path = hist_path = None
  if workdir is not None:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    state_path, hist_path = workdir / STATE_FILE, workdir / HISTORY_FILE
    if state_path.exists():
      state, step, done = load_state(state_path, state, meta=meta)
      history = _read_history(hist_path, done)
      if done > budget:
        raise ValueError(f"{state_path} holds {done} evaluations, more than budget={budget}.")
    with open(hist_path, "w") as f:  # drop lines written after the last saved state
      f.writelines(json.dumps(h) + "\n" for h in history)

  with tqdm(total=budget, initial=done, desc="search", disable=not progress) as bar:
    while done < budget:
      n = min(batch_size, budget - done)
      archs, state = ask(jax.random.fold_in(loop_key, step), state, n)
      archs = np.asarray(archs)
      rewards = np.asarray(evaluate(archs), dtype=np.float32).reshape(-1)
      if rewards.shape != (n,):
        raise ValueError(f"evaluate returned {rewards.shape[0]} rewards for {n} architectures.")
      state = tell(state, archs, rewards)
      extra = getattr(evaluate, "last_metrics", None) or {}  # e.g. an evaluator's accuracies
      new = [_record(space, done + i, a, r, {k: float(np.asarray(v).reshape(-1)[i])
                                             for k, v in extra.items()})
             for i, (a, r) in enumerate(zip(archs, rewards))]
      history.extend(new)
      done, step = done + n, step + 1
      if workdir is not None:
        with open(hist_path, "a") as f:
          f.writelines(json.dumps(h) + "\n" for h in new)
        save_state(state_path, state, step=step, num_evaluated=done, meta=meta)
      bar.update(n)
      bar.set_postfix(best=max(h["reward"] for h in history))

  all_archs = np.asarray([h["indices"] for h in history], np.int32).reshape(-1, len(space))
  all_rewards = np.asarray([h["reward"] for h in history], np.float32)
  order = np.argsort(-all_rewards, kind="stable")[:top_k]
  return Result(best=[history[i] for i in order], best_archs=all_archs[order],
                best_rewards=all_rewards[order], archs=all_archs, rewards=all_rewards,
                history=history, state=state)
