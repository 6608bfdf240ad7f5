"""A population's train step: vmap over the models against a loop over them inside the step.

``jaxcnn.train.steps.over_models`` loops over the models on CPU (``lax.map``) and vmaps them
elsewhere; this times both on the device present, alternating, on one fixed synthetic batch per
model (say so when quoting the numbers)::

  python benchmarks/population_step.py --model resnet20 --models 2 --batch-size 128
  python benchmarks/population_step.py --model simple_cnn --models 16 --batch-size 128 --rounds 2
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.models import create_model
from jaxcnn.train import steps
from jaxcnn.train.optim import make_optimizer
from jaxcnn.train.population import Population

PLAIN = steps.over_models


def vmapped(fn, num_models, in_axes):
  """``over_models`` with ``jax.vmap`` for several models (what it does on GPU/TPU)."""
  if num_models is not None and num_models > 1:
    return jax.vmap(fn, in_axes=in_axes)
  return PLAIN(fn, num_models, in_axes)


def looped(fn, num_models, in_axes):
  """``over_models`` with a loop over several models (what it does on CPU)."""
  if num_models is not None and num_models > 1:
    return steps.loop_over_models(fn, in_axes)
  return PLAIN(fn, num_models, in_axes)


def step_seconds(model, tx, batch, num_models: int, over_models, steps_timed: int) -> float:
  """Seconds per step of a fresh population whose step is built with ``over_models``."""
  steps.over_models = over_models  # read by make_train_step when Population builds its step
  try:
    pop = Population(model, tx, num_models=num_models,
                     preprocess=lambda x: x.astype(jnp.float32) / 255.0)
  finally:
    steps.over_models = PLAIN
  state, _ = pop.init(list(range(num_models)), batch["image"].shape[2:])
  step = pop.train_step.lower(state, batch).compile()
  state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  t0 = time.perf_counter()
  for _ in range(steps_timed):
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  if not np.all(np.isfinite(jax.device_get(metrics["loss"]))):
    raise FloatingPointError("the loss became NaN/inf.")
  return (time.perf_counter() - t0) / steps_timed


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="resnet20")
  parser.add_argument("--models", type=int, default=2, help="population size (>= 2)")
  parser.add_argument("--batch-size", type=int, default=128, help="per model")
  parser.add_argument("--input-shape", default="32,32,3", help="H,W,C of one image")
  parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
  parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each")
  args = parser.parse_args()
  if args.models < 2:
    parser.error(f"--models must be >= 2 (one model runs the plain step), got {args.models}.")

  shape = tuple(int(s) for s in args.input_shape.split(","))
  model = create_model(args.model, num_classes=10)
  tx = make_optimizer({"name": "sgd", "momentum": 0.9, "nesterov": True}, 0.05)
  rng = np.random.default_rng(0)
  m, b = args.models, args.batch_size
  batch = {"image": jnp.asarray(rng.integers(0, 256, (m, b, *shape), np.uint8)),
           "label": jnp.asarray(rng.integers(0, 10, (m, b), np.int32))}
  times: dict[str, list[float]] = {"vmap": [], "loop": []}
  for _ in range(args.rounds):
    times["vmap"].append(step_seconds(model, tx, batch, m, vmapped, args.steps))
    times["loop"].append(step_seconds(model, tx, batch, m, looped, args.steps))
  device = jax.devices()[0]
  print(f"{args.model}, {m} models x batch {b}, {device.device_kind} ({device.platform}); "
        f"over_models on this backend: {'loop' if jax.default_backend() == 'cpu' else 'vmap'}")
  for name, values in times.items():
    best = min(values)
    print(f"  {name}: {' / '.join(f'{1000 * v:.0f}' for v in values)} ms/step, best "
          f"{m * b / best:,.0f} images/s")
  print(f"  loop / vmap speed: {min(times['vmap']) / min(times['loop']):.2f}x (best of each)")


if __name__ == "__main__":
  main()
