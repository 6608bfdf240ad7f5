"""Train steps in a ``lax.scan`` against a Python loop of the same jitted step, per convolution.

  python benchmarks/scan_steps.py [--model resnet20] [--batch-size 64] [--steps 3] [--rounds 3]

Inside a loop body XLA:CPU runs convolutions whose dimension labels are not plain NHWC x HWIO
as generic loops (see ``jaxcnn/nn/conv.py``): this times ``--steps`` train steps both ways with
the default convolution (``jaxcnn.nn.conv.Conv``) and with ``flax.linen.Conv`` (XLA's own
gradients), all four programs compiled in one process and their runs alternated, and prints the
ratios. Synthetic pixels; SGD with momentum; float32.
"""

from __future__ import annotations

import argparse
import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.models import create_model
from jaxcnn.train.optim import make_optimizer
from jaxcnn.train.state import create_train_state
from jaxcnn.train.steps import make_train_step


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="resnet20")
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--size", type=int, default=32)
  parser.add_argument("--steps", type=int, default=3, help="train steps per timed run")
  parser.add_argument("--rounds", type=int, default=3)
  args = parser.parse_args()

  tx = make_optimizer({"name": "sgd", "momentum": 0.9}, 0.1)
  rng = np.random.default_rng(0)
  shape = (args.size, args.size, 3)
  batch = {"image": jnp.asarray(rng.normal(size=(args.batch_size, *shape)), jnp.float32),
           "label": jnp.asarray(rng.integers(0, 10, args.batch_size), jnp.int32)}
  programs = {}
  for conv_name, kwargs in [("jaxcnn.nn.conv.Conv", {}), ("flax.linen.Conv", {"conv": nn.Conv})]:
    model = create_model(args.model, num_classes=10, **kwargs)
    state = create_train_state(model, tx, jax.random.PRNGKey(0), shape)
    step = make_train_step(model, tx)
    one = step.lower(state, batch).compile()

    def scanned(s, b, step=step):
      return jax.lax.scan(lambda c, _: (step(c, b)[0], None), s, None, length=args.steps)[0]

    many = jax.jit(scanned, donate_argnums=0).lower(state, batch).compile()
    programs[conv_name] = (state, one, many)

  def run(state, one, many, mode):
    s = jax.tree.map(jnp.copy, state)
    t0 = time.perf_counter()
    if mode == "loop":
      for _ in range(args.steps):
        s, _ = one(s, batch)
    else:
      s = many(s, batch)
    jax.block_until_ready(s)
    return time.perf_counter() - t0

  times = {(c, m): [] for c in programs for m in ("loop", "scan")}
  for _ in range(args.rounds):
    for (c, m), t in times.items():
      t.append(run(*programs[c], m))
  load = os.getloadavg()
  print(f"{args.model}, batch {args.batch_size}, {args.steps} steps per run, best of "
        f"{args.rounds} alternating rounds; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
  for c in programs:
    loop, scan = min(times[(c, "loop")]), min(times[(c, "scan")])
    print(f"{c:<22} Python loop {loop:7.2f} s   lax.scan {scan:7.2f} s   scan / loop "
          f"{scan / loop:5.2f}")


if __name__ == "__main__":
  main()
