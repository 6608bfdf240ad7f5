"""``jaxcnn init-study``: activation statistics of a deep MLP under four weight initializations.

The CS231n lecture experiment: a 10-layer MLP of width 500 without biases, tanh or ReLU, fed
1,000 unit-Gaussian samples. Each layer multiplies the activation scale by about
``stddev * sqrt(width)`` times the nonlinearity's gain, so

* ``normal(stddev=0.01)``: activations vanish geometrically (tanh: x0.22 per layer);
* ``normal(stddev=1.0)``: tanh saturates at +-1 from the first layer; ReLU explodes;
* ``xavier_normal``: holds tanh; with ReLU the variance halves each layer and collapses;
* ``kaiming_normal(nonlinearity='relu')``: holds ReLU.

CS231n's "Xavier" is ``randn / sqrt(fan_in)`` (``lecun_normal``); ``xavier_normal`` (Glorot)
is ``sqrt(2 / (fan_in + fan_out))``, the same for the square width x width layers used here.

References: CS231n (Stanford), lecture "Training Neural Networks I"; Glorot & Bengio 2010,
"Understanding the difficulty of training deep feedforward neural networks"; He et al. 2015,
"Delving Deep into Rectifiers".
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
from typing import Any, Sequence

import flax.linen as nn
import jax

from jaxcnn import diagnostics
from jaxcnn.nn import activations, initializers

INITS = ("normal(stddev=0.01)", "normal(stddev=1.0)", "xavier_normal",
         "kaiming_normal(nonlinearity='relu')")


class MLP(nn.Module):
  """``num_layers`` bias-free Dense layers of ``width`` units, each followed by ``act``."""

  num_layers: int = 10
  width: int = 500
  act: Any = "tanh"
  kernel_init: Any = "xavier_normal"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for _ in range(self.num_layers):
      x = nn.Dense(self.width, use_bias=False, kernel_init=initializers.get(self.kernel_init))(x)
      x = activations.Activation(self.act)(x)
    return x


@dataclasses.dataclass(frozen=True)
class Case:
  """One (nonlinearity, init) run: per-hidden-layer statistics after the nonlinearity."""

  nonlinearity: str
  init: str
  stats: list[diagnostics.LayerStats]
  verdict: str


def verdict(stats: Sequence[diagnostics.LayerStats]) -> str:
  """One word for how activations propagate through the hidden layers.

  ``saturated`` if over half the last layer's outputs sit at a bound of tanh/sigmoid; otherwise
  by the per-layer growth factor of the std, ``r = (std_last / std_first) ** (1 / (L - 1))``:
  ``vanishing`` (r < 0.5), ``collapsing`` (r < 0.8; ReLU under Xavier has r = 1/sqrt(2)),
  ``exploding`` (r > 1.25), else ``holding``.
  """
  first, last = stats[0], stats[-1]
  if last.saturated is not None and last.saturated > 0.5:
    return "saturated"
  if len(stats) < 2:
    return "holding"
  ratio = last.std / first.std if first.std > 0 else 0.0
  rate = ratio ** (1.0 / (len(stats) - 1))
  if rate < 0.5:
    return "vanishing"
  if rate < 0.8:
    return "collapsing"
  if rate > 1.25:
    return "exploding"
  return "holding"


def run_init_study(nonlinearities: Sequence[str] = ("tanh", "relu"), inits: Sequence[str] = INITS,
                   num_layers: int = 10, width: int = 500, num_samples: int = 1000,
                   seed: int = 0) -> list[Case]:
  """Runs every (nonlinearity, init) pair on the same unit-Gaussian data; returns the cases.

  Inputs have dimension ``width``; the same parameter key is used for every case.
  """
  if min(num_layers, width, num_samples) < 1:
    raise ValueError(f"num_layers, width and num_samples must be positive, got "
                     f"{num_layers}, {width}, {num_samples}.")
  data_key, param_key = jax.random.split(jax.random.key(seed))
  x = jax.random.normal(data_key, (num_samples, width))
  cases, drawn = [], {}
  for act in nonlinearities:
    # The kernel initializer acts in init only: one apply per nonlinearity, so that
    # activation_stats compiles its forward pass once for all inits (not once per case).
    apply_fn = MLP(num_layers=num_layers, width=width, act=act).apply
    for init in inits:
      model = MLP(num_layers=num_layers, width=width, act=act, kernel_init=init)
      # The weights depend on the key, the init and the layer names only, so a nonlinearity
      # without parameters of its own gets the weights the first one got: drawn once per init.
      shapes = jax.tree.map(lambda a: (a.shape, a.dtype), jax.eval_shape(model.init, param_key, x))
      if init not in drawn or drawn[init][0] != shapes:
        drawn[init] = (shapes, model.init(param_key, x))
      variables = drawn[init][1]
      stats = diagnostics.activation_stats(apply_fn, variables, x)
      stats = [s for s in stats if s.kind == "activation"]
      cases.append(Case(act, init, stats, verdict(stats)))
  return cases


def _slug(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def _layer_lines(case: Case) -> list[str]:
  return [f"hidden layer {i} had mean {s.mean:.3g} and std {s.std:.3g}"
          + (f", saturated {s.saturated:.2f}" if s.saturated is not None else "")
          + (f", dead {s.dead:.2f}" if s.dead is not None else "")
          for i, s in enumerate(case.stats, 1)]


def summary_table(cases: Sequence[Case]) -> str:
  """Markdown table: one row per case with first/last std, their ratio and the verdict."""
  rows = ["| nonlinearity | init | std layer 1 | std last | ratio | saturated (last) | "
          "dead (last) | verdict |", "|---|---|---|---|---|---|---|---|"]
  for c in cases:
    first, last = c.stats[0], c.stats[-1]
    ratio = last.std / first.std if first.std > 0 else math.nan
    fmt = lambda v: "-" if v is None else f"{v:.2f}"
    rows.append(f"| {c.nonlinearity} | {c.init} | {first.std:.3g} | {last.std:.3g} | "
                f"{ratio:.3g} | {fmt(last.saturated)} | {fmt(last.dead)} | {c.verdict} |")
  return "\n".join(rows)


def _plot_std_by_layer(cases: Sequence[Case], path: str) -> None:
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  acts = list(dict.fromkeys(c.nonlinearity for c in cases))
  fig = Figure(figsize=(5 * len(acts), 4), layout="constrained")
  for ax, act in zip(fig.subplots(1, len(acts), squeeze=False)[0], acts):
    for c in (c for c in cases if c.nonlinearity == act):
      ax.semilogy(range(1, len(c.stats) + 1), [max(s.std, 1e-30) for s in c.stats], "o-",
                  label=f"{c.init}: {c.verdict}")
    ax.set(title=act, xlabel="hidden layer", ylabel="std of activations")
    ax.legend(fontsize="small")
  fig.savefig(path, format="png", dpi=100)


def main(argv: Sequence[str] | None = None) -> int:
  """``jaxcnn init-study``: prints per-layer tables and verdicts, writes PNGs and a markdown table."""
  parser = argparse.ArgumentParser(prog="jaxcnn init-study", description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="runs/init_study",
                      help="output folder for the PNGs and init_study.md (default: %(default)s)")
  parser.add_argument("--layers", type=int, default=10,
                      help="number of tanh/ReLU layers of the MLP (default: %(default)s)")
  parser.add_argument("--width", type=int, default=500,
                      help="units per layer (default: %(default)s)")
  parser.add_argument("--samples", type=int, default=1000,
                      help="unit-Gaussian input samples pushed through (default: %(default)s)")
  parser.add_argument("--seed", type=int, default=0, help="PRNG seed (default: %(default)s)")
  args = parser.parse_args(argv)
  for name in ("layers", "width", "samples"):
    if getattr(args, name) < 1:
      parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")

  cases = run_init_study(num_layers=args.layers, width=args.width, num_samples=args.samples,
                         seed=args.seed)
  os.makedirs(args.out, exist_ok=True)
  note = ("xavier_normal is Glorot's sqrt(2 / (fan_in + fan_out)); for these square layers it "
          "equals CS231n's 'Xavier' randn / sqrt(fan_in) (lecun_normal).")
  print(f"{args.layers}-layer MLP, width {args.width}, {args.samples} unit-Gaussian samples. "
        f"{note}")
  markdown = [f"# Initialization study\n\n{args.layers}-layer MLP, width {args.width}, no biases, "
              f"{args.samples} unit-Gaussian inputs, seed {args.seed}. {note}\n",
              summary_table(cases), ""]
  for case in cases:
    png = os.path.join(args.out, f"{case.nonlinearity}_{_slug(case.init)}.png")
    diagnostics.plot_activation_stats(case.stats, png,
                                      title=f"{case.nonlinearity}, {case.init}: {case.verdict}")
    lines = _layer_lines(case)
    print(f"\n{case.nonlinearity}, {case.init} -> {case.verdict}")
    print("\n".join("  " + line for line in lines))
    markdown += [f"## {case.nonlinearity}, {case.init}: {case.verdict}\n",
                 *(f"- {line}" for line in lines), f"\n![]({os.path.basename(png)})\n"]
  _plot_std_by_layer(cases, os.path.join(args.out, "std_by_layer.png"))
  with open(os.path.join(args.out, "init_study.md"), "w") as f:
    f.write("\n".join(markdown))
  print(f"\n{summary_table(cases)}\n\nWrote {args.out}/init_study.md, std_by_layer.png and "
        f"{len(cases)} per-case plots.")
  return 0
