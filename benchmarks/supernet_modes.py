"""Many children of the NAS-Bench-201 supernet: vmap over architectures, lax.map, a Python loop.

Eval-mode logits of ``--archs`` random children on one batch, with shared weights. Prints
architectures per second for: ``vmap`` (one program, every branch of every switch computed for
every child), ``map`` (one program, children in sequence, each computing its own branch), ``loop``
(one compiled supernet called once per child from Python, the arch a traced scalar input) and
``children`` (each child compiled as a standalone network; compilation counted, then not).

  .venv/bin/python benchmarks/supernet_modes.py --num_cells 1 --channels 8 --size 16
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.search import nasbench201 as nb, supernet as sn


def best_of(fn, repeats):
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return min(times)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--num_cells", type=int, default=1)
  p.add_argument("--channels", type=int, default=8)
  p.add_argument("--size", type=int, default=16)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--archs", type=int, default=16)
  p.add_argument("--children", type=int, default=4, help="standalone children compiled")
  p.add_argument("--repeats", type=int, default=3)
  args = p.parse_args()

  sup = sn.SuperNet(num_cells=args.num_cells, channels=args.channels)
  x = jax.random.normal(jax.random.PRNGKey(1), (args.batch, args.size, args.size, 3))
  v = jax.jit(lambda k: sup.init(k, x, jnp.zeros(6, jnp.int32), train=False))(
      jax.random.PRNGKey(0))
  archs = sn.sample_archs(jax.random.PRNGKey(2), args.archs)
  n = len(archs)
  print(f"backend {jax.default_backend()}, N={args.num_cells}, C={args.channels}, "
        f"{args.size}x{args.size}, batch {args.batch}, {n} archs")
  results = {}
  for mode in sn.MODES:
    t0 = time.perf_counter()
    jax.block_until_ready(sn.child_logits(sup, v, x, archs, mode=mode))
    first = time.perf_counter() - t0
    t = best_of(lambda: sn.child_logits(sup, v, x, archs, mode=mode), args.repeats)
    results[mode] = n / t
    print(f"{mode:8s} {n / t:8.1f} archs/s   (first call, compilation included: {first:.1f} s)")

  one = jax.jit(lambda v, x, a: sup.apply(v, x, a, train=False))
  t0 = time.perf_counter()
  jax.block_until_ready(one(v, x, jnp.asarray(archs[0])))
  first = time.perf_counter() - t0
  t = best_of(lambda: [one(v, x, jnp.asarray(a)) for a in archs], args.repeats)
  results["loop"] = n / t
  print(f"{'loop':8s} {n / t:8.1f} archs/s   (first call, compilation included: {first:.1f} s)")

  compile_s, run_s = [], []
  for a in archs[:args.children]:
    child = sn.child(sup, a)
    cv = sn.child_variables(v, a)
    f = jax.jit(lambda v, x: child.apply(v, x, train=False))
    t0 = time.perf_counter()
    jax.block_until_ready(f(cv, x))
    compile_s.append(time.perf_counter() - t0)
    run_s.append(best_of(lambda: f(cv, x), args.repeats))
  print(f"{'children':8s} {1 / np.mean(compile_s):8.2f} archs/s compiled each "
        f"({np.mean(compile_s):.2f} s per child), {1 / np.mean(run_s):.1f} archs/s once compiled")
  best = max(results, key=results.get)
  print(f"fastest shared-weight mode here: {best}")


if __name__ == "__main__":
  main()
