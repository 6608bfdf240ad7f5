"""Where the time of a jaxcnn CPU train step goes, by category of operation (issue 12).

  python benchmarks/profile_step.py [--model resnet20] [--batch-size 128] [--steps 5] \
      [--norm batch|fused_batch] [--conv jaxcnn|flax]
  python benchmarks/profile_step.py --backends   # one convolution under YNNPACK and under Eigen

Method: the compiled step (``jaxcnn.train.steps.make_train_step``, so with the compile option of
``jaxcnn.nn.conv.jit``) runs ``--steps`` times under ``jax.profiler.trace``; XLA:CPU's thunk
executor records a start event per executed HLO instruction (``args.hlo_op``) and an
``end: <name>`` event when it is done, in the trace's ``*.trace.json.gz`` (Chrome/Perfetto JSON);
an instruction's time is the span between the two (the start event alone covers only the
dispatch of an asynchronous Eigen convolution, ~50 us). Each instruction is classified from the
optimized HLO (``compiled.as_text()``):

* convolutions: forward (outside ``transpose(jvp(...))`` in the op name), input gradient (inside
  it, output batch dimension = the batch) and weight gradient (inside it, any other output);
* transposes/copies: ``copy`` instructions and fusions whose fused computation has a
  ``transpose`` or ``copy`` (what feeds the gradient convolutions, with any element-wise work XLA
  recomputes inside them);
* optimizer: everything outside the model's forward and backward pass (no ``jvp(`` in the op
  name: SGD momentum, weight decay, the parameter update);
* BatchNorm and element-wise: the rest of the model's pass (BatchNorm's statistics and
  normalisation, ReLU, the residual adds, pooling, the classifier head and the loss).

Printed: milliseconds per step of each category (the sum of its instructions' spans over the
steps, divided by the steps) and its share of the summed spans, beside the wall time of a step;
independent thunks run concurrently (a transpose while a convolution runs on the pool), so the
sum can exceed the wall time and overlapping instructions share the cores.

``--backends`` instead times single convolutions at ResNet-20's three stage shapes (batch 128,
3x3, 32x32x16, 16x16x32, 8x8x64) in the forms jaxcnn's step runs them (forward and input
gradient: NHWC x HWIO; weight gradient: the activation as ``(C, H, W, N)`` against the output
gradient as ``(H, W, N, O)``), each compiled twice, with XLA:CPU's default library fusions
(YNNPACK convolutions where XLA's ``IsConvolutionOpSupportedByYnn`` accepts them) and with
``jaxcnn.nn.conv``'s option (Eigen), the two run alternately.
"""

from __future__ import annotations

import argparse
import collections
import functools
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

CATEGORIES = ("forward conv", "input-gradient conv", "weight-gradient conv", "transposes/copies",
              "BatchNorm and element-wise", "optimizer")
_INSTR = re.compile(r"^\s*(?:ROOT )?%(\S+) = (\(.*?\)|\S+?)(?:\{[^}]*\})? ([a-z][a-z0-9_-]*)\(")


def _parse_hlo(text: str) -> tuple[dict[str, list[tuple[str, str, str]]], list[str]]:
  """``({computation: [(name, shape, opcode, line)]}, entry's instruction lines)``."""
  comps: dict[str, list] = {}
  entry = None
  current = None
  for line in text.splitlines():
    head = re.match(r"^(ENTRY )?%(\S+) ", line)
    if head and line.rstrip().endswith("{"):
      current = head.group(2)
      comps[current] = []
      if head.group(1):
        entry = current
      continue
    m = _INSTR.match(line)
    if m and current is not None:
      comps[current].append((m.group(1), m.group(2), m.group(3), line))
  return comps, comps[entry]


def classify(text: str, batch_size: int) -> dict[str, str]:
  """Category of each top-level instruction of the optimized HLO ``text``."""
  comps, entry = _parse_hlo(text)
  out = {}
  for name, shape, opcode, line in entry:
    op_name = re.search(r'op_name="([^"]*)"', line)
    op_name = op_name.group(1) if op_name else ""
    backward = "transpose(jvp(" in op_name
    if opcode == "convolution":
      dims = [int(d) for d in re.findall(r"\d+", shape.split("[", 1)[1].split("]")[0])]
      if not backward:
        out[name] = "forward conv"
      elif dims[0] == batch_size:
        out[name] = "input-gradient conv"
      else:
        out[name] = "weight-gradient conv"
      continue
    called = re.search(r"calls=%([^,\s]+)", line)
    inner = {op for _, _, op, _ in comps.get(called.group(1), [])} if called else set()
    if opcode in ("copy", "transpose") or inner & {"transpose", "copy"}:
      out[name] = "transposes/copies"
    elif "jvp(" not in op_name:
      out[name] = "optimizer"
    else:
      out[name] = "BatchNorm and element-wise"
  return out


def _op_spans(logdir: str, module: str) -> list[tuple[str, float]]:
  """``(instruction, microseconds)`` for every executed instruction of ``module``: from its start
  event to its ``end: <name>`` event. An asynchronous thunk (an Eigen convolution) returns from
  its start event in ~50 us while its work runs on the thread pool; the end event marks when it is
  done, so the span, not the start event's duration, is the instruction's time."""
  (path,) = glob.glob(os.path.join(logdir, "**", "*.trace.json.gz"), recursive=True)
  with gzip.open(path) as f:
    events = sorted((e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"),
                    key=lambda e: e["ts"])
  pending = collections.defaultdict(collections.deque)
  spans = []
  for e in events:
    if "hlo_op" in e.get("args", {}) and e["args"].get("hlo_module", module) == module:
      pending[e["name"]].append(e)
    elif e["name"].startswith("end: ") and pending[e["name"][5:]]:
      start = pending[e["name"][5:]].popleft()
      spans.append((start["name"], e["ts"] + e["dur"] - start["ts"]))
  return spans


def backends(rounds: int, reps: int) -> None:
  """Prints the best time of each convolution under both compile options (see module doc)."""
  import jax
  import jax.numpy as jnp
  from jax import lax

  from jaxcnn.nn.conv import compiler_options

  eigen = compiler_options()
  if eigen is None:
    raise SystemExit("The Eigen compile option is unavailable here (not CPU, or another XLA).")
  nhwc = ("NHWC", "HWIO", "NHWC")
  print(f"{'shape':<14}{'form':<16}{'YNNPACK default ms':>20}{'Eigen ms':>10}{'Eigen/YNN':>11}"
        f"{'  library in default program'}")
  for hw, c in ((32, 16), (16, 32), (8, 64)):
    key = jax.random.split(jax.random.PRNGKey(0), 2)
    x = jax.random.normal(key[0], (128, hw, hw, c))
    w = jax.random.normal(key[1], (3, 3, c, c))
    forms = {
        "forward/input": (lambda a, b: lax.conv_general_dilated(
            a, b, (1, 1), ((1, 1), (1, 1)), dimension_numbers=nhwc), (x, w)),
        "weight grad": (lambda a, b: lax.conv_general_dilated(
            a, b, (1, 1), ((1, 1), (1, 1)), dimension_numbers=nhwc),
                        (jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(x, (1, 2, 0, 3)))),
    }
    for form, (fn, operands) in forms.items():
      progs = {name: jax.jit(fn, compiler_options=opts).lower(*operands).compile()
               for name, opts in (("ynn", None), ("eigen", eigen))}
      text = progs["ynn"].as_text()
      lib = "YNNPACK" if "__ynn" in text else "Eigen (YNNPACK declined)"
      best = {name: float("inf") for name in progs}
      for name in progs:
        jax.block_until_ready(progs[name](*operands))
      for _ in range(rounds):
        for name, prog in progs.items():
          t0 = time.perf_counter()
          for _ in range(reps):
            out = prog(*operands)
          jax.block_until_ready(out)
          best[name] = min(best[name], (time.perf_counter() - t0) / reps)
      print(f"{f'{hw}x{hw}x{c}':<14}{form:<16}{1000 * best['ynn']:>20.2f}"
            f"{1000 * best['eigen']:>10.2f}{best['eigen'] / best['ynn']:>10.2f}x  {lib}")
  load = os.getloadavg()
  print(f"batch 128, 3x3, float32; best of {rounds} alternating rounds of {reps}; load average "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="resnet20")
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--size", type=int, default=32, help="image height and width")
  parser.add_argument("--steps", type=int, default=5, help="profiled steps")
  parser.add_argument("--norm", default="batch", choices=["batch", "fused_batch"],
                      help="flax's BatchNorm or fused_batchnorm.py's (one-pass backward)")
  parser.add_argument("--conv", default="jaxcnn", choices=["jaxcnn", "flax"])
  parser.add_argument("--top", type=int, default=0, help="also print the N slowest instructions")
  parser.add_argument("--backends", action="store_true",
                      help="time single convolutions under YNNPACK and Eigen instead")
  parser.add_argument("--rounds", type=int, default=10, help="--backends: alternating rounds")
  args = parser.parse_args()
  if args.backends:
    backends(args.rounds, reps=5)
    return

  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import numpy as np

  from jaxcnn.models import create_model
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  from fused_batchnorm import BatchNorm
  from jaxcnn.train.optim import make_optimizer
  from jaxcnn.train.state import create_train_state
  from jaxcnn.train.steps import make_train_step

  choices = {"conv": nn.Conv} if args.conv == "flax" else {}
  if args.norm == "fused_batch":
    choices["norm"] = functools.partial(BatchNorm, momentum=0.9, epsilon=1e-5)
  model = create_model(args.model, num_classes=10, **choices)
  tx = make_optimizer({"name": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
                      0.1)
  state = create_train_state(model, tx, jax.random.PRNGKey(0), (args.size, args.size, 3))
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.normal(size=(args.batch_size, args.size, args.size, 3)),
                                jnp.float32),
           "label": jnp.asarray(rng.integers(0, 10, args.batch_size), jnp.int32)}
  compiled = make_train_step(model, tx).lower(state, batch).compile()
  executable = compiled.fn
  text = executable.as_text()
  module = re.search(r"HloModule (\S+?),", text).group(1)
  kinds = classify(text, args.batch_size)

  for _ in range(3):  # warm-up
    state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  t0 = time.perf_counter()
  for _ in range(args.steps):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  wall = (time.perf_counter() - t0) / args.steps
  with tempfile.TemporaryDirectory() as logdir:
    with jax.profiler.trace(logdir):
      for _ in range(args.steps):
        state, metrics = compiled(state, batch)
      jax.block_until_ready(metrics)
    spans = _op_spans(logdir, module)

  per_op = collections.Counter()
  for op, us in spans:
    per_op[op] += us / 1000 / args.steps  # microseconds -> ms per step
  unknown = sorted(set(per_op) - set(kinds))
  totals = collections.Counter()
  counts = collections.Counter()
  for op, ms in per_op.items():
    totals[kinds.get(op, "unclassified")] += ms
    counts[kinds.get(op, "unclassified")] += 1
  summed = sum(totals.values())
  load = os.getloadavg()
  print(f"{args.model}, batch {args.batch_size}, {args.size}x{args.size}x3, float32, norm "
        f"{args.norm}, conv {args.conv}; {args.steps} steps; wall {1000 * wall:.1f} ms/step "
        f"untraced; summed spans {summed:.1f} ms/step; load average {load[0]:.1f} "
        f"{load[1]:.1f} {load[2]:.1f}")
  print(f"{'category':<30}{'ops':>6}{'ms/step':>10}{'share':>8}")
  for cat in (*CATEGORIES, *(["unclassified"] if unknown else [])):
    print(f"{cat:<30}{counts[cat]:>6}{totals[cat]:>10.1f}{100 * totals[cat] / summed:>7.1f}%")
  if unknown:
    print(f"unclassified: {', '.join(unknown[:10])}", file=sys.stderr)
  for op, ms in per_op.most_common(args.top):
    print(f"  {op:<40}{kinds.get(op, '?'):<30}{ms:>8.2f} ms")


if __name__ == "__main__":
  main()
