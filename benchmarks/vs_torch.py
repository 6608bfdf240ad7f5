"""jaxcnn's CPU train step against PyTorch's, measured in one run with the two alternating.

  python benchmarks/vs_torch.py --torch-python /path/to/venv-with-torch/bin/python \
      [--model resnet20|mobilenet_v2] [--batch-size 128] [--rounds 6] [--steps 5]

Every variant is a separate worker process (its own interpreter, threads and flags: JAX needs no
torch and torch no JAX) that builds its model, warms up, then waits; the driver asks each in
turn for ``--steps`` timed steps, ``--rounds`` times, so a shared machine's load falls on all
variants alike and only the ratios are compared. Variants: ``jax`` (jaxcnn as installed),
``jax_eigen`` (``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution``:
XLA's Eigen convolutions instead of YNNPACK), ``jax_fused_bn`` (jaxcnn with
``benchmarks/fused_batchnorm.py``'s BatchNorm, whose train-mode backward is one fused pass,
instead of ``flax.linen.BatchNorm``), ``torch_nchw`` and ``torch_channels_last`` (eager
PyTorch; channels_last is its fastest CPU layout for convolutions). The step is the same in
each: float32, cross-entropy on synthetic pixels, SGD with Nesterov momentum 0.9 and weight
decay 5e-4, BatchNorm in training mode. The two networks have the same parameter count (checked:
the workers print it and the driver refuses to compare different networks).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

VARIANTS = ("jax", "jax_flax_conv", "jax_fused_bn", "jax_eigen", "torch_nchw",
            "torch_channels_last")
EIGEN_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


# ----------------------------------------------------------------------------------------------
# Workers: print one JSON line {"params": n} when ready, then answer "run N" with the seconds of
# N steps, until "quit".


def _serve(step, params: int) -> None:
  print(json.dumps({"params": params}), flush=True)
  for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "quit":
      return
    n = int(cmd[1])
    t0 = time.perf_counter()
    step(n)
    print(json.dumps({"seconds": time.perf_counter() - t0}), flush=True)


def jax_worker(model_name: str, batch_size: int, size: int, flax_conv: bool,
               fused_bn: bool = False) -> None:
  import functools

  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import numpy as np

  from jaxcnn.models import create_model
  from jaxcnn.train.optim import make_optimizer
  from jaxcnn.train.state import create_train_state
  from jaxcnn.train.steps import make_train_step

  choices = {"conv": nn.Conv} if flax_conv else {}
  if fused_bn:  # the registry's "batch" (momentum 0.9, epsilon 1e-5) with the fused backward
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from fused_batchnorm import BatchNorm
    choices["norm"] = functools.partial(BatchNorm, momentum=0.9, epsilon=1e-5)
  model = create_model(model_name, num_classes=10, **choices)
  tx = make_optimizer({"name": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
                      0.1)
  state = create_train_state(model, tx, jax.random.PRNGKey(0), (size, size, 3))
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.normal(size=(batch_size, size, size, 3)), jnp.float32),
           "label": jnp.asarray(rng.integers(0, 10, batch_size), jnp.int32)}
  compiled = make_train_step(model, tx).lower(state, batch).compile()
  box = [state]

  def step(n: int) -> None:
    s = box[0]
    for _ in range(n):
      s, metrics = compiled(s, batch)
    jax.block_until_ready(metrics)
    box[0] = s

  step(3)
  _serve(step, sum(x.size for x in jax.tree.leaves(state.params)))


def _torch_resnet20(nn):
  """ResNet-20 as jaxcnn builds it: post-activation basic blocks, 16-32-64 channels, and where
  the shape changes a parameter-free shortcut that subsamples and zero-pads the channels (He et
  al. 2016, section 4.2, option A)."""

  class Block(nn.Module):

    def __init__(self, cin, cout, stride):
      super().__init__()
      self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.b1 = nn.BatchNorm2d(cout)
      self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.b2 = nn.BatchNorm2d(cout)
      self.stride, self.extra = stride, cout - cin

    def forward(self, x):
      y = self.b2(self.c2(nn.functional.relu(self.b1(self.c1(x)))))
      s = x[:, :, ::self.stride, ::self.stride]
      if self.extra:
        s = nn.functional.pad(s, (0, 0, 0, 0, 0, self.extra))
      return nn.functional.relu(y + s)

  layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
  cin = 16
  for stage, cout in enumerate((16, 32, 64)):
    for i in range(3):
      layers.append(Block(cin, cout, 2 if stage and not i else 1))
      cin = cout
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
  return nn.Sequential(*layers)


def torch_worker(model_name: str, batch_size: int, size: int, channels_last: bool) -> None:
  import torch
  from torch import nn

  torch.manual_seed(0)
  if model_name == "resnet20":
    model = _torch_resnet20(nn)
  elif model_name == "mobilenet_v2":
    import torchvision
    model = torchvision.models.mobilenet_v2(num_classes=10)
  else:
    raise SystemExit(f"No PyTorch twin of {model_name!r}; known: resnet20, mobilenet_v2.")
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  model = model.to(memory_format=fmt).train()
  x = torch.randn(batch_size, 3, size, size).to(memory_format=fmt)
  y = torch.randint(0, 10, (batch_size,))
  opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                        weight_decay=5e-4)

  def step(n: int) -> None:
    for _ in range(n):
      opt.zero_grad(set_to_none=True)
      nn.functional.cross_entropy(model(x), y).backward()
      opt.step()

  step(3)
  _serve(step, sum(p.numel() for p in model.parameters()))


# ----------------------------------------------------------------------------------------------
# Driver.


def _start(variant: str, args: argparse.Namespace) -> subprocess.Popen:
  env = dict(os.environ)
  python = sys.executable
  if variant.startswith("torch"):
    python = args.torch_python
  if variant == "jax_eigen":
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + EIGEN_FLAG).strip()
  cmd = [python, os.path.abspath(__file__), "--worker", variant, "--model", args.model,
         "--batch-size", str(args.batch_size), "--size", str(args.size)]
  return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def _read(proc: subprocess.Popen, variant: str) -> dict:
  line = proc.stdout.readline()
  if not line:
    raise SystemExit(f"The {variant} worker exited without answering (exit code {proc.wait()}).")
  return json.loads(line)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--torch-python", default=sys.executable,
                      help="an interpreter that has torch (and torchvision for mobilenet_v2)")
  parser.add_argument("--model", default="resnet20", choices=["resnet20", "mobilenet_v2"])
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--size", type=int, default=32, help="image height and width")
  parser.add_argument("--rounds", type=int, default=6)
  parser.add_argument("--steps", type=int, default=5, help="timed steps per variant and round")
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
  args = parser.parse_args()

  if args.worker:
    if args.worker.startswith("jax"):
      jax_worker(args.model, args.batch_size, args.size, args.worker == "jax_flax_conv",
                 args.worker == "jax_fused_bn")
    else:
      torch_worker(args.model, args.batch_size, args.size, args.worker == "torch_channels_last")
    return

  variants = [v.strip() for v in args.variants.split(",")]
  unknown = sorted(set(variants) - set(VARIANTS))
  if unknown:
    raise SystemExit(f"Unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}.")
  workers = {v: _start(v, args) for v in variants}
  try:
    params = {v: _read(p, v)["params"] for v, p in workers.items()}
    if len(set(params.values())) != 1:
      raise SystemExit(f"The variants build different networks: parameters {params}.")
    times = {v: [] for v in variants}
    for _ in range(args.rounds):
      for v, p in workers.items():
        p.stdin.write(f"run {args.steps}\n")
        p.stdin.flush()
        times[v].append(_read(p, v)["seconds"] / args.steps)
  finally:
    for p in workers.values():
      if p.poll() is None:
        p.stdin.write("quit\n")
        p.stdin.flush()
        p.wait()

  load = os.getloadavg()
  print(f"{args.model} ({next(iter(params.values())):,} parameters), batch {args.batch_size}, "
        f"{args.size}x{args.size}x3, float32; {args.rounds} rounds x {args.steps} steps per "
        f"variant, alternating; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
  best = {v: min(t) for v, t in times.items()}
  ref = best.get("torch_channels_last")
  print(f"{'variant':<22}{'median ms':>10}{'best ms':>10}{'images/s':>10}"
        f"{'vs torch channels_last':>24}")
  for v in variants:
    med = statistics.median(times[v])
    ratio = f"{ref / best[v]:.2f}x" if ref else "-"
    print(f"{v:<22}{1000 * med:>10.1f}{1000 * best[v]:>10.1f}"
          f"{args.batch_size / best[v]:>10.0f}{ratio:>24}")


if __name__ == "__main__":
  main()
