"""A/B of the train step with ``flax.linen.Conv`` against ``jaxcnn.nn.conv.Conv``, in one process.

Each variant is compiled once; then one step of each runs in turn (rotating the order) for
``--rounds`` rounds, and the median step time of each is compared, so that a shared machine's load
falls on all variants alike (only the ratios mean anything there). ``--eigen`` adds variants
compiled with CPU convolutions kept away from YNNPACK (the XLA option
``xla_cpu_experimental_ynn_fusion_type`` set to individual dots only). Synthetic pixels:

  python benchmarks/conv_ab.py --model resnet20 --batch-size 128 --rounds 10 --eigen
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.models import create_model
from jaxcnn.nn.conv import Conv
from jaxcnn.train.optim import make_optimizer
from jaxcnn.train.state import create_train_state
from jaxcnn.train.steps import make_train_step

EIGEN = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="resnet20")
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--input-shape", default="32,32,3", help="H,W,C of one image")
  parser.add_argument("--rounds", type=int, default=10)
  parser.add_argument("--eigen", action="store_true", help="also compile with Eigen convolutions")
  args = parser.parse_args()
  shape = tuple(int(s) for s in args.input_shape.split(","))
  tx = make_optimizer({"name": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
                      0.1)
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.integers(0, 256, (args.batch_size, *shape), np.uint8)),
           "label": jnp.asarray(rng.integers(0, 10, args.batch_size, np.int32))}
  options = {"xla": None, **({"eigen": EIGEN} if args.eigen else {})}
  runs = {}
  for kind, overrides in (("nn.Conv", {}), ("conv.Conv", {"conv": Conv})):
    model = create_model(args.model, num_classes=10, **overrides)
    step = make_train_step(model, tx, preprocess=lambda x: x.astype(jnp.float32) / 255.0)
    for backend, opts in options.items():
      state = create_train_state(model, tx, jax.random.PRNGKey(0), shape)
      t0 = time.perf_counter()
      lowered = step.fn.lower(state, batch, step.preprocess)
      compiled = lowered.compile(compiler_options=opts) if opts else lowered.compile()
      name = f"{kind} {backend}"
      print(f"{name}: compiled in {time.perf_counter() - t0:.1f} s", flush=True)
      state, metrics = compiled(state, batch, step.preprocess)
      jax.block_until_ready(metrics)
      runs[name] = {"fn": compiled, "state": state, "times": [], "losses": []}
  names = list(runs)
  for r in range(args.rounds):
    for name in names[r % len(names):] + names[:r % len(names)]:
      run = runs[name]
      t0 = time.perf_counter()
      run["state"], metrics = run["fn"](run["state"], batch, step.preprocess)
      jax.block_until_ready(metrics)
      run["times"].append(time.perf_counter() - t0)
      run["losses"].append(float(metrics["loss"]))
  base = statistics.median(runs[names[0]]["times"])
  print(f"{args.model}, batch {args.batch_size}, {args.rounds} steps each, "
        f"{jax.devices()[0].device_kind}:")
  for name, run in runs.items():
    t = statistics.median(run["times"])
    same = run["losses"] == runs[names[0]]["losses"]
    print(f"  {name:16s} {args.batch_size / t:8.1f} images/s  median step {1000 * t:7.1f} ms  "
          f"{base / t:.2f}x  losses {'equal' if same else 'differ'}")


if __name__ == "__main__":
  main()
