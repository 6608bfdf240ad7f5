"""Images/s and compile time of the train step, on whatever JAX device is present.

Synthetic pixels with real shapes (say so when quoting the numbers):

  python benchmarks/train_step.py --model resnet20 --batch-size 128 --input-shape 32,32,3
  python benchmarks/train_step.py --model resnet50 --batch-size 64 --input-shape 224,224,3 \
      --num-classes 1000 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.models import create_model
from jaxcnn.train.optim import make_optimizer
from jaxcnn.train.state import create_train_state
from jaxcnn.train.steps import make_train_step


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="resnet20")
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--input-shape", default="32,32,3", help="H,W,C of one image")
  parser.add_argument("--num-classes", type=int, default=10)
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--steps", type=int, default=20, help="timed steps")
  parser.add_argument("--warmup", type=int, default=3, help="untimed steps after compiling")
  args = parser.parse_args()

  shape = tuple(int(s) for s in args.input_shape.split(","))
  model = create_model(args.model, num_classes=args.num_classes)
  tx = make_optimizer({"name": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
                      0.1)
  state = create_train_state(model, tx, jax.random.PRNGKey(0), shape)
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.integers(0, 256, (args.batch_size, *shape), np.uint8)),
           "label": jnp.asarray(rng.integers(0, args.num_classes, args.batch_size, np.int32))}
  step = make_train_step(model, tx, preprocess=lambda x: x.astype(jnp.float32) / 255.0,
                         compute_dtype=jnp.dtype(args.dtype))

  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  for _ in range(args.warmup):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  t0 = time.perf_counter()
  for _ in range(args.steps):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  elapsed = time.perf_counter() - t0

  params = sum(x.size for x in jax.tree.leaves(state.params))
  print(f"device       {jax.devices()[0].device_kind} ({jax.devices()[0].platform}) "
        f"x{jax.device_count()}")
  print(f"model        {args.model} ({params:,} parameters), input {shape}, batch {args.batch_size},"
        f" {args.dtype}, synthetic pixels")
  print(f"compile      {compile_s:.2f} s")
  print(f"step         {1000 * elapsed / args.steps:.2f} ms")
  print(f"throughput   {args.steps * args.batch_size / elapsed:,.0f} images/s")


if __name__ == "__main__":
  main()
