"""Weight initialization: activation and gradient statistics of deep nets under seven inits.

Three parts.

(a) The CS231n experiment (reused from :mod:`jaxcnn.studies.init_study`): a 10-layer bias-free
MLP fed unit-Gaussian inputs under ``normal(0.01)``, ``normal(1.0)``, Xavier and Kaiming, with tanh
and ReLU. Each layer multiplies the activation scale by about ``stddev * sqrt(width)`` times the
nonlinearity's gain, so small weights vanish, large ones saturate (tanh) or explode (ReLU),
Xavier holds tanh and Kaiming holds ReLU.

(b) Deep ReLU networks without normalization, trained on real images: a plain CNN laid out like a
CIFAR ResNet (:class:`PlainCNN`, ``6n + 2`` weight layers) and the CIFAR ResNet itself
(:class:`jaxcnn.models.resnet.ResNet` with ``norm="none"``), initialized by

* ``normal(stddev=0.01)``: activations shrink by ``~0.01 sqrt(9 C / 2)`` per layer;
* ``xavier_normal`` (Glorot): variance-preserving for linear/tanh units, loses half the variance
  per ReLU layer;
* ``kaiming_normal`` (He): ``N(0, 2 / fan_in)``, preserves the second moment through ReLU;
* ``orthogonal(gain=sqrt 2)`` (Saxe et al.): same scale as Kaiming, orthonormal columns;
* ``lsuv`` (Mishkin & Matas): orthogonal, then each layer rescaled until its output has std 1 on a
  batch, input to output (:func:`jaxcnn.nn.init_procedures.lsuv`);
* ``kraehenbuehl`` (Kraehenbuehl et al.): from ``normal(0.01)``, every unit of every layer
  rescaled and shifted to mean 0 and std 1 on a batch (:func:`jaxcnn.nn.init_procedures.kraehenbuehl`);
* ``fixup`` (Zhang et al., residual only): the last layer of every branch and the classifier at
  zero, the other branch layers He-initialized and scaled by ``L ** (-1 / (2m - 2))``, scalar
  biases and multipliers: at initialization every residual block is its shortcut.

For each (architecture, init) we record per layer the std of every activation and the norm of the
loss gradient with respect to every weight kernel (:func:`jaxcnn.diagnostics.network_stats`), at
initialization and after a short SGD run, and the test accuracy.

(c) Symmetry: with every weight equal (``constant(0.5)``) and zero biases, all units of a hidden
layer compute the same value and receive the same gradient, so gradient descent keeps them equal
forever: the layer is one unit repeated. :func:`symmetry_run` measures the largest spread across
the units of each hidden layer (activations, kernels) step by step; random init has units that
differ from the start.

References: CS231n (Stanford), lecture "Training Neural Networks I"; Glorot & Bengio 2010,
"Understanding the difficulty of training deep feedforward neural networks"; He et al. 2015,
"Delving Deep into Rectifiers"; Saxe et al. 2013, "Exact solutions to the nonlinear dynamics of
learning in deep linear neural networks"; Mishkin & Matas 2015, "All you need is a good init";
Kraehenbuehl et al. 2015, "Data-dependent Initializations of Convolutional Neural Networks";
Zhang, Dauphin & Ma 2019, "Fixup Initialization: Residual Learning Without Normalization".
"""

from __future__ import annotations

import functools
import os
import re
import time
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.data import preprocessing
from jaxcnn.diagnostics import network_stats
from jaxcnn.models import resnet
from jaxcnn.nn import activations, init_procedures, initializers
from jaxcnn.studies import common, init_study
from jaxcnn.train import state as train_state
from jaxcnn.train import steps as train_steps

ARCHS = ("plain", "residual")
PROCEDURES = ("lsuv", "kraehenbuehl", "fixup")  # whole-network inits; the rest are initializer specs
RESIDUAL_ONLY = ("fixup",)
# Kernel initializer each procedure starts from (LSUV redraws orthogonal kernels itself).
PROCEDURE_BASE = {"lsuv": "orthogonal", "kraehenbuehl": "normal(stddev=0.01)",
                  "fixup": "kaiming_normal"}

# ----------------------------------------------------------------------------------------------
# Networks and inits.


class PlainCNN(nn.Module):
  """The layer layout of a CIFAR ResNet (``6n + 2`` weight layers) without shortcuts or norm.

  A 3x3 stem convolution, then ``len(stage_sizes)`` stages of ``2 * stage_sizes[i]`` 3x3
  convolutions with ``num_filters * 2**i`` filters (the first of each later stage has stride 2),
  every convolution followed by ``act``; global average pooling and a Dense classifier. Every
  layer has a bias (init 0).

  References: He et al. 2015, "Deep Residual Learning for Image Recognition" (Sec. 4.2, the plain
  baselines of Fig. 6).
  """

  stage_sizes: Sequence[int] = (3, 3, 3)
  num_filters: int = 16
  num_classes: int = 10
  act: Any = "relu"
  kernel_init: Any = "kaiming_normal"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    del train  # no dropout or normalization
    if x.ndim != 4:
      raise ValueError(f"PlainCNN expects NHWC input, got shape {x.shape}.")
    init = initializers.get(self.kernel_init)
    conv = lambda features, stride: nn.Conv(  # noqa: E731
        features, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)), kernel_init=init)
    x = activations.Activation(self.act)(conv(self.num_filters, 1)(x))
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(2 * num_blocks):
        stride = 2 if i > 0 and j == 0 else 1
        x = activations.Activation(self.act)(conv(self.num_filters * 2**i, stride)(x))
    return nn.Dense(self.num_classes, kernel_init=init)(x.mean(axis=(1, 2)))


class MLPClassifier(nn.Module):
  """Flatten, ``Dense -> act`` per hidden width (biases init 0), then a Dense classifier; every
  kernel from ``kernel_init``."""

  widths: Sequence[int] = (32, 32)
  num_classes: int = 10
  act: Any = "relu"
  kernel_init: Any = "kaiming_normal"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    init = initializers.get(self.kernel_init)
    x = x.reshape(x.shape[0], -1)
    for width in self.widths:
      x = activations.Activation(self.act)(nn.Dense(width, kernel_init=init)(x))
    return nn.Dense(self.num_classes, kernel_init=init)(x)


def check_init(arch: str, init: str) -> None:
  """Raises a ValueError for an unknown architecture, an unknown init, or Fixup on a plain net."""
  if arch not in ARCHS:
    raise ValueError(f"Unknown architecture {arch!r}. Known: {', '.join(ARCHS)}.")
  if init in RESIDUAL_ONLY and arch != "residual":
    raise ValueError(f"{init} initializes residual networks only, not {arch!r}.")
  if init not in PROCEDURES:
    initializers.get(init)  # ValueError listing the known initializers


def build_model(arch: str, init: str, *, stage_sizes: Sequence[int] = (3, 3, 3),
                num_filters: int = 16, num_classes: int = 10, act: Any = "relu") -> nn.Module:
  """The network ``arch`` ("plain" or "residual") with the kernel initializer of ``init``.

  "residual" is the CIFAR ResNet (3x3 stem, basic blocks, zero-padding shortcuts) without
  normalization; ``init="fixup"`` builds its Fixup version. For ``lsuv`` and ``kraehenbuehl``
  the kernels start from ``PROCEDURE_BASE`` and :func:`init_network` finishes the job.
  """
  check_init(arch, init)
  kernel_init = PROCEDURE_BASE.get(init, init)
  if arch == "plain":
    return PlainCNN(stage_sizes=tuple(stage_sizes), num_filters=num_filters,
                    num_classes=num_classes, act=act, kernel_init=kernel_init)
  return resnet.ResNet(stage_sizes=tuple(stage_sizes), num_classes=num_classes,
                       num_filters=num_filters, stem="cifar", stem_features=num_filters,
                       shortcut="zero_pad", norm="none", fixup=init == "fixup", act=act,
                       kernel_init=kernel_init)


def init_network(arch: str, init: str, key: jax.Array, batch: jax.Array,
                 **model_kwargs: Any) -> tuple[nn.Module, Any]:
  """``(model, variables)`` of ``arch`` initialized by ``init``; ``batch`` (preprocessed images)
  drives the data-dependent procedures (LSUV, Kraehenbuehl) and fixes the input shape.

  On CPU, XLA compiles ``jax.random.normal`` for the default threefry keys in about 2 s per
  kernel shape; a ``jax.random.key(seed, impl="rbg")`` key compiles about 10x faster (the study
  uses one; any key works).
  """
  model = build_model(arch, init, **model_kwargs)
  variables = model.init(key, batch[:1], train=False)
  apply_fn = lambda v, x: model.apply(v, x, train=False)  # noqa: E731
  if init == "lsuv":
    # LSUV's orthogonal kernels come from a threefry key: its vmapped draw with an "rbg" key
    # hung on XLA:CPU (jax 0.10.2, 20-layer net; measured).
    seed = jax.random.randint(jax.random.fold_in(key, 1), (), 0, 2**31 - 1)
    variables = init_procedures.lsuv(apply_fn, variables, batch, key=jax.random.key(int(seed)))
  elif init == "kraehenbuehl":
    variables = init_procedures.kraehenbuehl(apply_fn, variables, batch)
  return model, variables


def init_label(spec: str) -> str:
  """Short label of an init spec: ``"orthogonal(gain=1.4142135623730951)"`` -> ``"orthogonal(1.41)"``."""
  spec = re.sub(r"\w+=", "", spec)
  return re.sub(r"\d+\.\d+(e-?\d+)?", lambda m: format(float(m.group(0)), ".3g"), spec)


# ----------------------------------------------------------------------------------------------
# Training.


def _evaluate(eval_step, state, images: np.ndarray, labels: np.ndarray, chunk: int) -> float:
  correct = count = 0.0
  for start in range(0, len(labels), chunk):
    img, lab = images[start:start + chunk], labels[start:start + chunk]
    pad = chunk - len(lab)
    batch = {"image": jnp.asarray(np.concatenate([img, np.zeros((pad, *img.shape[1:]), img.dtype)])),
             "label": jnp.asarray(np.concatenate([lab, np.zeros(pad, lab.dtype)])),
             "mask": jnp.asarray(np.arange(chunk) < len(lab), jnp.float32)}
    sums = jax.device_get(eval_step(state, batch))
    correct, count = correct + float(sums["correct"]), count + float(sums["count"])
  return correct / max(count, 1.0)


def make_trainer(model: nn.Module, preprocess: Any, *, learning_rate: float, momentum: float,
                 batch_size: int, eval_chunk: int = 500) -> Callable[..., tuple[Any, dict]]:
  """``train(variables, data, num_epochs, seed) -> (variables, history)`` for one architecture.

  SGD with momentum at a constant rate, no weight decay; the train and eval steps
  (:mod:`jaxcnn.train.steps`) compile once per architecture and are reused for every init.
  ``data`` is ``{"train": {"image", "label"}, "test": {...}}`` (uint8 images); ``history`` holds
  ``loss`` (per step), ``test_accuracy`` (per epoch) and ``seconds``. The steps run in a Python
  loop: on XLA:CPU a ``lax.scan`` over the same conv-net step ran 10x slower (measured).
  """
  tx = optax.sgd(learning_rate, momentum=momentum or None)
  train_step = train_steps.make_train_step(model, tx, preprocess=preprocess)
  eval_step = train_steps.make_eval_step(model, preprocess=preprocess)

  def train(variables, data, num_epochs: int, seed: int = 0):
    start = time.time()
    params = jax.tree.map(jnp.array, variables["params"])  # a copy: the step donates its input
    state = train_state.TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats={},
                                   opt_state=tx.init(params), rng=jax.random.PRNGKey(seed))
    images, labels = data["train"]["image"], data["train"]["label"]
    steps_per_epoch = len(labels) // batch_size
    if steps_per_epoch < 1:
      raise ValueError(f"batch_size {batch_size} exceeds the {len(labels)} training examples.")
    rng = np.random.default_rng(seed)
    losses, accuracies = [], []
    for _ in range(num_epochs):
      order = rng.permutation(len(labels))
      for i in range(steps_per_epoch):
        idx = order[i * batch_size:(i + 1) * batch_size]
        state, metrics = train_step(state, {"image": images[idx], "label": labels[idx]})
        losses.append(metrics["loss"])
      accuracies.append(_evaluate(eval_step, state, data["test"]["image"], data["test"]["label"],
                                  eval_chunk))
    history = {"loss": np.asarray(jax.device_get(losses), np.float64),
               "test_accuracy": np.asarray(accuracies), "seconds": time.time() - start}
    return {**variables, "params": state.params}, history

  return train


# ----------------------------------------------------------------------------------------------
# (c) Symmetry under constant init.


def unit_spread(values: Any) -> float:
  """Largest spread across units: ``max_i (max_j v[i, j] - min_j v[i, j])`` with units ``j`` on
  the last axis (activations ``(N, units)``, kernels ``(in, units)``); 0 iff all units agree."""
  values = np.asarray(values, np.float64)
  if values.ndim < 2 or values.shape[-1] < 2:
    raise ValueError(f"unit_spread needs at least 2 units on the last axis, got shape {values.shape}.")
  values = values.reshape(-1, values.shape[-1])
  return float(np.max(values.max(axis=-1) - values.min(axis=-1)))


def _hidden(model: MLPClassifier, params: Any, x: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
  """Logits and the hidden activations (outputs of the Activation modules), in order."""
  logits, state = model.apply({"params": params}, x, mutable=["intermediates"],
                              capture_intermediates=lambda m, _: isinstance(m, activations.Activation))
  inter = state["intermediates"]
  return logits, [inter[f"Activation_{i}"]["__call__"][0] for i in range(len(model.widths))]


@functools.partial(jax.jit, static_argnames=("model", "learning_rate"))
def _sgd_step(model: MLPClassifier, params: Any, x: jax.Array, y: jax.Array, probe: jax.Array, *,
              learning_rate: float):
  """One SGD step on (x, y); returns the new params, the loss, the kernel gradients and the
  hidden activations on ``probe`` after the step."""
  def loss_fn(params):
    logits, _ = _hidden(model, params, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  loss, grads = jax.value_and_grad(loss_fn)(params)
  params = jax.tree.map(lambda p, g: p - learning_rate * g, params, grads)
  kernel_grads = [grads[f"Dense_{i}"]["kernel"] for i in range(len(model.widths))]
  return params, loss, kernel_grads, _hidden(model, params, probe)[1]


def symmetry_run(init: str, images: jax.Array, labels: jax.Array, *, widths: Sequence[int],
                 num_steps: int, learning_rate: float, batch_size: int, seed: int = 0,
                 test: tuple[jax.Array, jax.Array] | None = None) -> dict[str, Any]:
  """Trains :class:`MLPClassifier` (``kernel_init=init``, ReLU) by plain SGD and tracks symmetry.

  Args:
    init: kernel initializer spec, e.g. ``"constant(value=0.5)"`` or ``"kaiming_normal"``.
    images, labels: preprocessed training inputs (``(N, ...)``) and int labels.
    widths: hidden widths.
    num_steps: SGD steps, each on a batch of ``batch_size`` drawn with ``seed``.
    learning_rate: SGD step size.
    test: optional ``(images, labels)`` for a final accuracy.

  Returns:
    ``{"act_spread": (steps + 1, layers), "kernel_spread": (steps + 1, layers),
    "grad_spread": (steps, layers)`` (:func:`unit_spread` of each hidden layer's activations on
    the first ``batch_size`` examples, of its kernel, and of its kernel gradient), ``"loss"``
    (steps,), ``"active_fraction"`` (layers,): the fraction of positive activations on those
    examples after training (0 would make equal units trivial), ``"hidden_first"``: the first hidden layer's activations on 16 examples before and
    after training, ``"test_accuracy"`` (or None), ``"params"``: the trained parameters}.
  """
  num_classes = int(np.max(labels)) + 1
  params = MLPClassifier(widths=tuple(widths), num_classes=num_classes, kernel_init=init).init(
      jax.random.key(seed, impl="rbg"), images[:1])["params"]
  model = MLPClassifier(widths=tuple(widths), num_classes=num_classes)  # one compilation for all inits
  probe = images[:batch_size]
  layers = [f"Dense_{i}" for i in range(len(widths))]
  hidden = _hidden(model, params, probe)[1]
  first_before = np.asarray(hidden[0][:16])
  rng = np.random.default_rng(seed)
  act, kern, grad, losses = [], [], [], []
  for i in range(num_steps + 1):
    if i:
      idx = jnp.asarray(rng.choice(len(labels), batch_size, replace=False))
      params, loss, grads, hidden = _sgd_step(model, params, images[idx], labels[idx], probe,
                                              learning_rate=float(learning_rate))
      grad.append([unit_spread(g) for g in grads])
      losses.append(float(loss))
    act.append([unit_spread(h) for h in hidden])
    kern.append([unit_spread(params[name]["kernel"]) for name in layers])
  accuracy = None
  if test is not None:
    logits = model.apply({"params": params}, test[0])
    accuracy = float(np.mean(np.argmax(np.asarray(logits), -1) == np.asarray(test[1])))
  return {"act_spread": np.asarray(act), "kernel_spread": np.asarray(kern),
          "grad_spread": np.asarray(grad), "loss": np.asarray(losses),
          "active_fraction": np.asarray([float(np.mean(np.asarray(h) > 0)) for h in hidden]),
          "hidden_first": (first_before, np.asarray(hidden[0][:16])),
          "test_accuracy": accuracy, "params": params}


# ----------------------------------------------------------------------------------------------
# Data.


def load_data(config) -> dict[str, dict[str, np.ndarray]]:
  """uint8 images ``(N, H, W, C)`` and int32 labels of random train and test subsets.

  ``config.dataset`` "digits" (the quick setting) takes the offline digits (8x8; the arrays and
  splits of ``datasets.load("digits")``, taken from :mod:`jaxcnn.data.digits` directly, which
  skips building a tf.data pipeline); any other ``config.dataset`` comes from ``config.data_dir``
  (relative paths resolved against the repository root).
  """
  if config.dataset == "digits":
    from jaxcnn.data import digits  # pylint: disable=g-import-not-at-top

    images, labels = digits.digits_arrays()
    splits = {k: {"image": images[i], "label": labels[i]}
              for k, i in digits.split_indices(labels).items()}
  else:
    from jaxcnn.data import datasets  # pylint: disable=g-import-not-at-top

    data_dir = config.data_dir
    if data_dir and not os.path.isabs(data_dir):
      data_dir = str(common.REPO_ROOT / data_dir)
    splits = {k: datasets.load(config.dataset, k, data_dir=data_dir or None)
              for k in ("train", "test")}
  out = {}
  for split, size in (("train", config.num_train), ("test", config.num_test)):
    d = splits[split]
    order = np.random.default_rng(config.seed).permutation(len(d["label"]))[:size]
    out[split] = {"image": np.asarray(d["image"])[order],
                  "label": np.asarray(d["label"])[order].astype(np.int32)}
  return out


# ----------------------------------------------------------------------------------------------
# Figures.

_COLORS = ("tab:gray", "tab:orange", "tab:blue", "tab:green", "tab:red", "tab:purple", "tab:brown",
           "tab:pink", "tab:olive", "tab:cyan")


def _color(init: str, inits: Sequence[str]) -> str:
  return _COLORS[list(inits).index(init) % len(_COLORS)]


def _positive(values: np.ndarray) -> np.ndarray:
  """Zeros and non-finite values become NaN (gaps on a log axis)."""
  values = np.asarray(values, np.float64)
  return np.where(np.isfinite(values) & (values > 0), values, np.nan)


def plot_layer_stats(stats: dict[str, dict[str, dict[str, Any]]], when: str, path: str | None = None,
                     *, dpi: int = 100):
  """Per-layer activation std and kernel-gradient norm, one line per init, one row per
  architecture. ``stats[arch][init][when]`` is a :func:`network_stats` dict. Zero values (Fixup's
  gradients at init) are left out of the log plot."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  archs = list(stats)
  fig = Figure(figsize=(10, 3.2 * len(archs)), layout="constrained", dpi=dpi)
  axes = fig.subplots(len(archs), 2, squeeze=False)
  all_inits = list(dict.fromkeys(i for a in archs for i in stats[a]))
  for row, arch in zip(axes, archs):
    for init, by_when in stats[arch].items():
      s = by_when[when]
      style = dict(color=_color(init, all_inits), marker=".", label=init_label(init))
      row[0].semilogy(np.arange(1, len(s["act_std"]) + 1), _positive(s["act_std"]), "-", **style)
      row[1].semilogy(np.arange(1, len(s["grad_norm"]) + 1), _positive(s["grad_norm"]), "-",
                      **style)
    row[0].set(title=f"{arch}: std of activations ({when})", xlabel="activation layer (forward order)")
    row[1].set(title=f"{arch}: ||dL/dW|| per layer ({when})", xlabel="weight layer (forward order)")
    for ax in row:
      ax.xaxis.get_major_locator().set_params(integer=True)
    row[1].legend(fontsize="x-small")
  if path:
    fig.savefig(path, format="png", dpi=dpi)
  return fig


def plot_training(histories: dict[str, dict[str, dict[str, Any]]], path: str | None = None, *,
                  window: int = 10, dpi: int = 100):
  """Training loss (moving average over ``window`` steps) per init, one panel per architecture."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  archs = list(histories)
  fig = Figure(figsize=(5 * len(archs), 3.4), layout="constrained", dpi=dpi)
  axes = fig.subplots(1, len(archs), squeeze=False)[0]
  all_inits = list(dict.fromkeys(i for a in archs for i in histories[a]))
  for ax, arch in zip(axes, archs):
    for init, h in histories[arch].items():
      loss = np.asarray(h["loss"], np.float64)
      w = max(1, min(window, len(loss)))
      smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
      ax.plot(np.arange(w, len(loss) + 1), smooth, color=_color(init, all_inits),
              label=f"{init_label(init)}: {100 * h['test_accuracy'][-1]:.1f}%")
    ax.set(title=f"{arch}: training loss", xlabel="step", ylabel="cross-entropy")
    ax.set_ylim(0, 3.5)
    ax.legend(fontsize="x-small", title="final test accuracy", title_fontsize="x-small")
  if path:
    fig.savefig(path, format="png", dpi=dpi)
  return fig


def plot_std_by_layer(cases: Sequence[init_study.Case], path: str | None = None, *, dpi: int = 100):
  """Part (a): std of each hidden layer's activations, one line per init, a panel per nonlinearity."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  acts = list(dict.fromkeys(c.nonlinearity for c in cases))
  fig = Figure(figsize=(5 * len(acts), 3.6), layout="constrained", dpi=dpi)
  for ax, act in zip(fig.subplots(1, len(acts), squeeze=False)[0], acts):
    for c in (c for c in cases if c.nonlinearity == act):
      ax.semilogy(range(1, len(c.stats) + 1), _positive([s.std for s in c.stats]), "o-",
                  label=f"{init_label(c.init)}: {c.verdict}")
    ax.set(title=f"{act}, {len(c.stats)}-layer MLP", xlabel="hidden layer",
           ylabel="std of activations")
    ax.legend(fontsize="x-small")
  if path:
    fig.savefig(path, format="png", dpi=dpi)
  return fig


def plot_symmetry(runs: dict[str, dict[str, Any]], path: str | None = None, *, dpi: int = 100):
  """Left: largest spread across the units of each hidden layer during training, per init.
  Right: the first hidden layer's activations (16 examples x units) after training, per init:
  under constant init every row is one colour (all units equal)."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  fig = Figure(figsize=(4.2 * (1 + len(runs)), 3.2), layout="constrained", dpi=dpi)
  axes = fig.subplots(1, 1 + len(runs))
  for (init, r), color in zip(runs.items(), _COLORS[1:]):
    for layer in range(r["act_spread"].shape[1]):
      axes[0].plot(r["act_spread"][:, layer], color=color, ls=("-", "--", ":")[layer % 3],
                   label=f"{init_label(init)}, hidden layer {layer + 1}")
  axes[0].set(title="max spread of activations across units", xlabel="SGD step")
  axes[0].legend(fontsize="xx-small")
  for ax, (init, r) in zip(axes[1:], runs.items()):
    image = ax.imshow(r["hidden_first"][1], aspect="auto", cmap="viridis")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set(title=f"{init_label(init)}: hidden layer 1 after training", xlabel="unit",
           ylabel="example")
  if path:
    fig.savefig(path, format="png", dpi=dpi)
  return fig


# ----------------------------------------------------------------------------------------------
# The study.


def _fmt(value: float) -> str:
  return "nan" if not np.isfinite(value) else f"{value:.3g}"


def _deep_row(arch: str, init: str, r: dict[str, Any]) -> list[Any]:
  s0, s1, h = r["init"], r["trained"], r["history"]
  final_loss = float(np.mean(h["loss"][-max(1, len(h["loss"]) // 10):]))
  return [arch, init_label(init), _fmt(s0["act_std"][0]), _fmt(s0["act_std"][-1]),
          _fmt(s0["grad_norm"][0]), _fmt(s0["grad_norm"][-1]), _fmt(s1["act_std"][-1]),
          _fmt(s1["grad_norm"][0]), _fmt(final_loss) if np.isfinite(final_loss) else "diverged",
          f"{100 * h['test_accuracy'][-1]:.1f}"]


def run(config, workdir: str) -> dict[str, Any]:
  """Runs parts (a), (b), (c); writes ``initialization.md`` and the figures ``mlp_std_by_layer.png``,
  ``deep_at_init.png``, ``deep_after_training.png``, ``deep_training.png``, ``symmetry.png``.

  Returns {"mlp": [init_study.Case], "deep": {arch: {init: {"init": stats, "trained": stats,
  "history": ...}}}, "symmetry": {init: symmetry_run dict}, "table": path, "figures": [...]}.
  """
  q = config.get("quick", False)
  pick = lambda section, name: section[name]  # noqa: E731
  dpi = config.dpi
  os.makedirs(workdir, exist_ok=True)
  start = time.time()
  results: dict[str, Any] = {}
  figures = []

  # (a) The CS231n MLP experiment.
  m = config.mlp
  cases = init_study.run_init_study(
      nonlinearities=tuple(m.nonlinearities), inits=tuple(m.inits), num_layers=m.num_layers,
      width=pick(m, "width"), num_samples=pick(m, "num_samples"), seed=config.seed)
  results["mlp"] = cases
  plot_std_by_layer(cases, os.path.join(workdir, "mlp_std_by_layer.png"), dpi=dpi)
  figures.append("mlp_std_by_layer.png")

  # (b) Deep plain and residual nets.
  data = load_data(config)
  d = config.deep
  pre = preprocessing.fit("standardize", data["train"]["image"])
  probe_x = pre(jnp.asarray(data["train"]["image"][:config.stats_batch]))
  probe_y = jnp.asarray(data["train"]["label"][:config.stats_batch])
  arch_kwargs = dict(stage_sizes=tuple(pick(d, "stage_sizes")),
                     num_filters=pick(d, "num_filters"), num_classes=10, act=d.act)
  num_epochs = pick(d, "num_epochs")
  inits = pick(d, "inits")
  deep: dict[str, dict[str, dict[str, Any]]] = {}
  for arch in d.archs:
    deep[arch] = {}
    trainers: dict[bool, Callable[..., Any]] = {}
    for init in inits:
      if init in RESIDUAL_ONLY and arch != "residual":
        continue
      key = jax.random.key(config.seed, impl="rbg")  # see init_network on "rbg"
      model, variables = init_network(arch, init, key, probe_x, **arch_kwargs)
      # One compiled model per architecture: the kernel initializer is not used by apply.
      canonical = build_model(arch, "fixup" if init == "fixup" else "kaiming_normal", **arch_kwargs)
      fixup = init == "fixup"
      if fixup not in trainers:
        trainers[fixup] = make_trainer(canonical, pre, learning_rate=d.learning_rate,
                                       momentum=d.momentum, batch_size=d.batch_size)
      at_init = network_stats(canonical, variables, probe_x, probe_y)
      trained, history = trainers[fixup](variables, data, num_epochs, config.seed)
      after = network_stats(canonical, trained, probe_x, probe_y)
      deep[arch][init] = {"init": at_init, "trained": after, "history": history}
      print(f"initialization: {arch:8s} {init_label(init):18s} act std {at_init['act_std'][0]:.3g}"
            f" -> {at_init['act_std'][-1]:.3g}, test acc {history['test_accuracy'][-1]:.3f} "
            f"({history['seconds']:.0f} s)", flush=True)
  results["deep"] = deep
  for when, png in (("init", "deep_at_init.png"), ("trained", "deep_after_training.png")):
    plot_layer_stats(deep, when, os.path.join(workdir, png), dpi=dpi)
    figures.append(png)
  plot_training({a: {i: r["history"] for i, r in v.items()} for a, v in deep.items()},
                os.path.join(workdir, "deep_training.png"), dpi=dpi)
  figures.append("deep_training.png")

  # (c) Symmetry of constant init.
  s = config.symmetry
  x_train = pre(jnp.asarray(data["train"]["image"]))
  test = (pre(jnp.asarray(data["test"]["image"])), jnp.asarray(data["test"]["label"]))
  sym = {init: symmetry_run(init, x_train, jnp.asarray(data["train"]["label"]),
                            widths=tuple(s.widths), num_steps=pick(s, "num_steps"),
                            learning_rate=s.learning_rate, batch_size=s.batch_size,
                            seed=config.seed, test=test)
         for init in s.inits}
  results["symmetry"] = sym
  plot_symmetry(sym, os.path.join(workdir, "symmetry.png"), dpi=dpi)
  figures.append("symmetry.png")

  # The report.
  source = ("offline digits (8x8)" if config.dataset == "digits" else
            f"{config.dataset} from {config.data_dir}")
  n_train, n_test = len(data["train"]["label"]), len(data["test"]["label"])
  depth = 2 * sum(arch_kwargs["stage_sizes"]) + 2
  filters = "/".join(str(arch_kwargs["num_filters"] * 2**i)
                     for i in range(len(arch_kwargs["stage_sizes"])))
  sections = [
      "# Weight initialization\n",
      f"Data: {source}, {n_train} train / {n_test} test images (random subsets, seed "
      f"{config.seed}), standardized. Run took {time.time() - start:.0f} s"
      + (" (quick setting)." if q else "."),
      "",
      f"## (a) {m.num_layers}-layer MLP on unit-Gaussian inputs (CS231n)\n",
      f"Width {pick(m, 'width')}, no biases, {pick(m, 'num_samples')} samples "
      "(jaxcnn.studies.init_study). xavier_normal equals CS231n's randn / sqrt(fan_in) here "
      "(square layers).\n",
      init_study.summary_table(cases),
      "\n![](mlp_std_by_layer.png)\n",
      f"## (b) {depth}-layer plain and residual ReLU nets without normalization\n",
      f"{depth} weight layers (3x3 convolutions, {filters} filters, blocks per stage "
      f"{arch_kwargs['stage_sizes']}); residual = CIFAR ResNet with zero-padding shortcuts and "
      f"no BatchNorm (Fixup: its Fixup version). Statistics on {config.stats_batch} training "
      f"images; grad norm is ||dL/dW||, the L2 norm of the loss gradient w.r.t. a layer's kernel. Training: "
      f"SGD, momentum {d.momentum}, constant learning rate {d.learning_rate}, batch "
      f"{d.batch_size}, {num_epochs} epoch(s), same for every init. 'loss' is the mean training "
      "loss over the last 10% of steps.\n",
      common.markdown_table(
          [_deep_row(a, i, r) for a, v in deep.items() for i, r in v.items()],
          ("net", "init", "act std first", "act std last", "grad norm first", "grad norm last",
           "trained: act std last", "trained: grad norm first", "loss", "test acc %")),
      "\nAt initialization (Fixup: every gradient but the classifier's is exactly 0, so those "
      "points are missing on the log axis):\n\n![](deep_at_init.png)\n",
      "After training:\n\n![](deep_after_training.png)\n\n![](deep_training.png)\n",
      "## (c) Constant initialization keeps the units of a layer identical\n",
      f"MLP {tuple(s.widths)} (ReLU, zero biases) trained by plain SGD for "
      f"{pick(s, 'num_steps')} steps (learning rate {s.learning_rate}, batch {s.batch_size}). "
      "Spread = max over examples (or input weights) of (max - min across the units of the "
      "layer); 0 means every unit of the layer is the same. Active fraction: share of positive "
      "activations after training (the equal units are alive, not all zero).\n",
  ]
  rows = []
  for init, r in sym.items():
    for layer in range(r["act_spread"].shape[1]):
      rows.append([init_label(init), layer + 1, _fmt(r["act_spread"][0, layer]),
                   _fmt(r["act_spread"][-1, layer]), _fmt(r["kernel_spread"][0, layer]),
                   _fmt(r["kernel_spread"][-1, layer]), _fmt(np.max(r["grad_spread"][:, layer])),
                   f"{r['active_fraction'][layer]:.2f}", f"{100 * r['test_accuracy']:.1f}"])
  sections += [common.markdown_table(rows, (
      "init", "hidden layer", "act spread, step 0", f"act spread, step {pick(s, 'num_steps')}",
      "kernel spread, step 0", f"kernel spread, step {pick(s, 'num_steps')}",
      "max grad spread", "active fraction, end", "test acc %")), "\n![](symmetry.png)\n"]
  table = os.path.join(workdir, "initialization.md")
  with open(table, "w") as f:
    f.write("\n".join(sections))
  results["table"], results["figures"] = table, figures
  print(f"initialization: wrote {table} in {time.time() - start:.0f} s", flush=True)
  return results
