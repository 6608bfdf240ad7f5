"""The model zoo in one table: parameters and multiply-adds of every model beside the published ones.

Each registered model is built at its default input size from the registry metadata
(:func:`jaxcnn.models.model_info`: 224 for the ImageNet networks, the variant's own for
EfficientNet B0..B7, 32 for the CIFAR networks, 8x8x1 for the digits networks) with the
configuration its published figures describe (``Published.overrides``), and its trainable
parameters (:func:`jaxcnn.models.count_params`) and multiply-accumulates per image
(:func:`jaxcnn.models.flops`, the papers' convention) are set beside the published figures with
the relative difference. Nothing is compiled for those two columns: both come from
``jax.eval_shape``. Optionally the table adds the train-step throughput (images/s) of each model
on the present device, which compiles and runs the engine's train step.

:func:`plot_params_macs` draws the lectures' "accuracy vs operations" chart without the accuracy:
parameters against multiply-adds, log-log, one colour per family.

References: Canziani, Paszke & Culurciello 2017, "An Analysis of Deep Neural Network Models for
Practical Applications"; the papers of each family (see ``jaxcnn.models``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.studies import common


@dataclasses.dataclass(frozen=True)
class ZooRow:
  """One model of the zoo table.

  Attributes:
    name: registered model name.
    family: the module of ``jaxcnn.models`` that defines it (alexnet, vgg, resnet, ...).
    input_size: the input height (and width) the counts are for.
    params: our trainable parameters (the ``"params"`` collection).
    published_params: the published figure, or None.
    params_diff_pct: ``100 (ours - published) / published``, or None.
    params_match: ours equals the published figure to its precision (half a unit of its last
      digit where it is rounded, exact otherwise), or None without a published figure.
    macs: our multiply-accumulates per image.
    published_macs: the published figure at the same resolution, or None.
    macs_diff_pct: ``100 (ours - published) / published``, or None.
    images_per_s: train-step throughput on ``device`` (None if not measured).
    batch_size: batch size of the throughput measurement (None if not measured).
    source: where the published figures come from.
    notes: how the model was configured for the comparison (overrides, classes).
  """

  name: str
  family: str
  input_size: int
  params: int
  published_params: float | None
  params_diff_pct: float | None
  params_match: bool | None
  macs: float
  published_macs: float | None
  macs_diff_pct: float | None
  images_per_s: float | None = None
  batch_size: int | None = None
  source: str = ""
  notes: str = ""
  channels: int = 3


HEADERS = ("model", "family", "input", "params (ours)", "params (published)", "diff %",
           "matches", "MACs (ours)", "MACs (published)", "diff %", "train images/s", "source")


def percent_diff(ours: float | None, published: float | None) -> float | None:
  """``100 (ours - published) / published``; None if either is missing or published is 0."""
  if ours is None or published is None or published == 0:
    return None
  return 100.0 * (ours - published) / published


def _info(name: str):
  from jaxcnn.models import model_info  # pylint: disable=g-import-not-at-top

  return model_info(name)  # ValueError listing the known models if unknown


def family(name: str) -> str:
  """The family of a registered model (registry metadata, e.g. ``"resnet"``)."""
  return _info(name).family


def build(name: str):
  """The model as its published figures describe it (``Published.overrides`` applied)."""
  from jaxcnn.models import create_model  # pylint: disable=g-import-not-at-top

  published = _info(name).published
  return create_model(name, **(dict(published.overrides) if published else {}))


def native_input_shape(name: str) -> tuple[int, int, int]:
  """The ``(height, width, channels)`` a model was designed for (registry metadata)."""
  return _info(name).input_size


def native_input_size(name: str) -> int:
  """The input height a model was designed for (registry metadata; the zoo's are square)."""
  return native_input_shape(name)[0]


def _notes(published, model) -> str:
  notes = [f"{k}={v!r}" for k, v in (published.overrides if published else {}).items()]
  notes.append(f"{getattr(model, 'num_classes', '?')} classes")
  return ", ".join(notes)


def train_throughput(model, input_size: int, *, batch_size: int = 8, num_classes: int | None = None,
                     min_steps: int = 3, max_seconds: float = 5.0, seed: int = 0,
                     channels: int = 3) -> dict[str, float]:
  """Images per second of the engine's jitted train step (SGD with momentum) on this device.

  Random images and labels at ``(batch_size, input_size, input_size, channels)``. The step is compiled
  and run once (not timed), then run at least ``min_steps`` times and until ``max_seconds`` have
  passed; the time includes waiting for the result (``block_until_ready``).

  Returns:
    ``{"images_per_s", "steps", "seconds", "compile_s"}``.
  """
  import optax  # pylint: disable=g-import-not-at-top

  from jaxcnn.train.state import create_train_state  # pylint: disable=g-import-not-at-top
  from jaxcnn.train.steps import make_train_step  # pylint: disable=g-import-not-at-top

  if batch_size < 1 or min_steps < 1:
    raise ValueError(f"batch_size and min_steps must be >= 1, got {batch_size}, {min_steps}.")
  num_classes = num_classes or getattr(model, "num_classes", 10)
  rng = np.random.default_rng(seed)
  shape = (batch_size, input_size, input_size, channels)
  batch = {"image": jnp.asarray(rng.integers(0, 256, shape, dtype=np.uint8)),
           "label": jnp.asarray(rng.integers(0, num_classes, batch_size, dtype=np.int32))}
  tx = optax.sgd(0.01, momentum=0.9)
  state = create_train_state(model, tx, jax.random.PRNGKey(seed), shape[1:])
  step = make_train_step(model, tx, preprocess=lambda x: x / 255.0)
  t0 = time.perf_counter()
  state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - t0
  steps, t0 = 0, time.perf_counter()
  while steps < min_steps or time.perf_counter() - t0 < max_seconds:
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    steps += 1
  seconds = time.perf_counter() - t0
  return {"images_per_s": steps * batch_size / seconds, "steps": steps, "seconds": seconds,
          "compile_s": compile_s}


def zoo_table(names: Sequence[str] | None = None, *, input_size: int | None = None,
              throughput: bool = False, batch_size: int = 8,
              throughput_max_macs: float | None = None, throughput_seconds: float = 5.0,
              verbose: bool = False) -> list[ZooRow]:
  """Parameters and multiply-adds of each model beside the published figures.

  Args:
    names: registered model names (default: every registered model).
    input_size: one resolution for every model (None: each model's default input size from
      the registry, :func:`native_input_shape`; the channels are always the model's). Published multiply-adds are compared only at the resolution
      they were published for.
    throughput: also measure the train-step images/s on ``jax.devices()[0]``
      (:func:`train_throughput`).
    batch_size: batch size of the throughput measurement.
    throughput_max_macs: measure throughput only for models of at most this many multiply-adds
      per image (None: all); a cap for slow devices.
    throughput_seconds: time spent timing each model's step (after compiling it).
    verbose: print one line per model as it is done.

  Returns:
    One :class:`ZooRow` per model, in the order of ``names``.
  """
  from jaxcnn.models import count_params, flops, list_models  # pylint: disable=g-import-not-at-top

  names = list(list_models() if names is None else names)
  rows = []
  for name in names:
    t0 = time.perf_counter()
    info = _info(name)
    pub = info.published
    model = build(name)
    height, width, channels = info.input_size
    if input_size is not None:
      height = width = int(input_size)
    native = (height, width) == info.input_size[:2]
    params = count_params(model, (1, height, width, channels))
    macs = flops(model, (1, height, width, channels))
    pub_params = pub.params if pub else None
    pub_macs = pub.macs if pub and native else None
    rate = None
    if throughput and (throughput_max_macs is None or macs <= throughput_max_macs):
      rate = train_throughput(model, height, batch_size=batch_size, channels=channels,
                              max_seconds=throughput_seconds)["images_per_s"]
    rows.append(ZooRow(
        name=name, family=info.family, input_size=height, channels=channels, params=params,
        published_params=pub_params, params_diff_pct=percent_diff(params, pub_params),
        params_match=(None if pub_params is None
                      else abs(params - pub_params) <= pub.params_tol),
        macs=macs, published_macs=pub_macs, macs_diff_pct=percent_diff(macs, pub_macs),
        images_per_s=rate, batch_size=batch_size if rate is not None else None,
        source=pub.source if pub else "", notes=_notes(pub, model)))
    if verbose:
      print(f"{name}: {params:,} params, {macs / 1e6:,.1f} M MACs at {height}x{width}"
            + (f", {rate:,.1f} images/s" if rate is not None else "")
            + f" ({time.perf_counter() - t0:.1f} s)", flush=True)
  return rows


def _millions(value: float | None, digits: int = 2) -> str:
  return "" if value is None else f"{value / 1e6:,.{digits}f}M"


def _giga(value: float | None) -> str:
  if value is None:
    return ""
  return f"{value / 1e9:.3f}G" if value >= 1e8 else f"{value / 1e6:,.1f}M"


def _pct(value: float | None) -> str:
  return "" if value is None else f"{value:+.2f}"


def table_rows(rows: Sequence[ZooRow]) -> list[tuple[str, ...]]:
  """The cells of :data:`HEADERS` for each row (numbers formatted for reading)."""
  out = []
  for r in rows:
    match = "" if r.params_match is None else ("yes" if r.params_match else "no")
    source = r.source + (f" [{r.notes}]" if r.notes else "")
    rate = "" if r.images_per_s is None else f"{r.images_per_s:,.1f}"
    size = f"{r.input_size}" if r.channels == 3 else f"{r.input_size}x{r.input_size}x{r.channels}"
    out.append((r.name, r.family, size, f"{r.params:,}",
                "" if r.published_params is None else f"{r.published_params:,.0f}",
                _pct(r.params_diff_pct), match, _giga(r.macs), _giga(r.published_macs),
                _pct(r.macs_diff_pct), rate, source))
  return out


def markdown(rows: Sequence[ZooRow]) -> str:
  """The zoo as a GitHub markdown table (:data:`HEADERS`)."""
  return common.markdown_table(table_rows(rows), HEADERS)


def place_labels(ax, points: Sequence[tuple[str, float, float, str]], fontsize: float = 6.0):
  """Annotates (label, x, y, colour) data points of ``ax`` (call after setting its scales), trying a few offsets per label and taking the first
  whose estimated box overlaps no label placed before it (else the least overlapping one)."""
  fig = ax.figure
  ax.autoscale_view()
  to_px = ax.transData.transform
  scale = fig.dpi / 72.0  # points to pixels
  char_w, height = 0.55 * fontsize * scale, 1.1 * fontsize * scale
  offsets = [(4, 2), (4, -9), (-4, 2), (-4, -9), (4, 9), (-4, 9), (4, -16), (-4, -16), (4, 16),
             (-4, 16)]
  placed: list[tuple[float, float, float, float]] = []
  for label, x, y, color in sorted(points, key=lambda p: (p[1], p[2])):
    px, py = to_px((x, y))
    width = char_w * len(label)
    best, best_overlap = None, None
    for dx, dy in offsets:
      x0 = px + dx * scale - (width if dx < 0 else 0)
      box = (x0, py + dy * scale, x0 + width, py + dy * scale + height)
      overlap = sum(max(0.0, min(box[2], b[2]) - max(box[0], b[0]))
                    * max(0.0, min(box[3], b[3]) - max(box[1], b[1])) for b in placed)
      if best_overlap is None or overlap < best_overlap:
        best, best_overlap = ((dx, dy), box), overlap
      if overlap == 0:
        break
    (dx, dy), box = best
    placed.append(box)
    ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                color=color, ha="right" if dx < 0 else "left", va="bottom")


def plot_params_macs(rows: Sequence[ZooRow], path: str | None = None, *, title: str | None = None,
                     labels: bool = True, dpi: int = 100):
  """Parameters against multiply-adds per image, log-log, one colour per family; returns the Figure.

  Filled dots are ours, open circles the published figures where both are published. Saves a
  PNG to ``path`` if given.
  """
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  if not rows:
    raise ValueError("plot_params_macs needs at least one row.")
  families = sorted({r.family for r in rows})
  colors = {f: f"C{i % 10}" for i, f in enumerate(families)}
  fig = Figure(figsize=(12, 9), layout="constrained", dpi=dpi)
  ax = fig.add_subplot()
  for fam in families:
    members = [r for r in rows if r.family == fam]
    ax.scatter([r.macs for r in members], [r.params for r in members], s=30,
               color=colors[fam], label=fam, zorder=3)
    both = [r for r in members if r.published_macs and r.published_params]
    if both:
      ax.scatter([r.published_macs for r in both], [r.published_params for r in both], s=70,
                 facecolors="none", edgecolors=colors[fam], lw=0.8, zorder=2)
  ax.set_xscale("log")
  ax.set_yscale("log")
  if labels:
    place_labels(ax, [(r.name, r.macs, r.params, colors[r.family]) for r in rows])
  ax.set_xlabel("multiply-adds per image (at each model's native resolution)")
  ax.set_ylabel("trainable parameters")
  ax.grid(True, which="major", ls=":", lw=0.6)
  handles, names = ax.get_legend_handles_labels()
  from matplotlib.lines import Line2D  # pylint: disable=g-import-not-at-top
  handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="0.3"))
  names.append("published figure")
  ax.legend(handles, names, fontsize="small", loc="upper left")
  ax.set_title(title or "The model zoo: parameters against multiply-adds", fontsize="medium")
  if path:
    fig.savefig(path, format="png", dpi=dpi)
  return fig


def run(config, workdir: str) -> dict[str, Any]:
  """Writes ``zoo_table.md`` (the table) and ``params_macs.png`` (the scatter plot) to ``workdir``.

  Config fields: ``names`` (empty: every registered model), ``throughput``,
  ``throughput_names`` (time only these; empty: those under the cap), ``batch_size``,
  ``throughput_max_macs`` (0: no cap), ``throughput_seconds``, ``plot_exclude_families`` (left
  out of the plot, kept in the table), ``dpi``.

  Also writes ``zoo_table.json`` (the rows and the device). Returns ``{"rows": [ZooRow], "device": str, "table": path, "figure": path,
  "max_abs_params_diff_pct": float, "max_abs_macs_diff_pct": float, "seconds": float}``.
  """
  t0 = time.perf_counter()
  os.makedirs(workdir, exist_ok=True)
  names = tuple(config.names) or None
  cap = float(config.throughput_max_macs) or None
  timed = set(config.get("throughput_names", ()))
  if timed or not config.throughput:
    rows = zoo_table(names, verbose=True)
  else:
    rows = zoo_table(names, throughput=True, batch_size=int(config.batch_size),
                     throughput_max_macs=cap, throughput_seconds=float(config.throughput_seconds),
                     verbose=True)
  if timed and config.throughput:  # time only the few named models
    rows = [dataclasses.replace(r, batch_size=int(config.batch_size), images_per_s=train_throughput(
        build(r.name), r.input_size, batch_size=int(config.batch_size), channels=r.channels,
        max_seconds=float(config.throughput_seconds))["images_per_s"])
            if r.name in timed else r for r in rows]
  device = jax.devices()[0].device_kind
  count_s = time.perf_counter() - t0
  table = os.path.join(workdir, "zoo_table.md")
  timed_names = [r.name for r in rows if r.images_per_s is not None]
  with open(table, "w") as f:
    f.write("# The model zoo: parameters and multiply-adds, ours beside the published\n\n")
    f.write("Parameters: the trainable `params` collection (no BatchNorm statistics). MACs: "
            "multiply-accumulates per image of the eval-mode forward pass "
            "(`jaxcnn.models.flops`, every convolution and dense layer, padding taps included), "
            "at the resolution in the `input` column. diff %: 100 (ours - published) / "
            "published. matches: equal to the published count to its precision.\n\n")
    if timed_names:
      f.write(f"Train images/s: the engine's jitted train step (SGD with momentum, float32), "
              f"batch {config.batch_size}, random pixels, on `{device}`; measured for "
              f"{len(timed_names)} of {len(rows)} models"
              + (f" (those of at most {cap:.3g} multiply-adds per image)" if cap and
                 not timed else "")
              + ". Timings on a shared CPU are indicative only.\n\n")
    f.write(markdown(rows) + "\n")
  with open(os.path.join(workdir, "zoo_table.json"), "w") as f:
    json.dump({"device": device, "rows": [dataclasses.asdict(r) for r in rows]}, f, indent=1)
  figure = os.path.join(workdir, "params_macs.png")
  plotted = [r for r in rows if r.family not in tuple(config.plot_exclude_families)]
  plot_params_macs(plotted or rows, figure, dpi=int(config.dpi))
  params_diffs = [abs(r.params_diff_pct) for r in rows if r.params_diff_pct is not None]
  macs_diffs = [abs(r.macs_diff_pct) for r in rows if r.macs_diff_pct is not None]
  results = dict(rows=rows, device=device, table=table, figure=figure,
                 max_abs_params_diff_pct=max(params_diffs, default=math.nan),
                 max_abs_macs_diff_pct=max(macs_diffs, default=math.nan),
                 seconds=count_s)
  print(f"zoo_table: {len(rows)} models in {count_s:.1f} s; max |params diff| "
        f"{results['max_abs_params_diff_pct']:.2f}%, max |MACs diff| "
        f"{results['max_abs_macs_diff_pct']:.2f}%", flush=True)
  return results
