"""The CIFAR-10 speed run: airbench94's network and recipe, 94% test accuracy in about 10 epochs.

``RECIPE`` holds airbench94's hyperparameters as plain Python values (it needs no ml_collections,
so ``benchmarks/gpu_suite.py`` reads it on a machine without it); :func:`get_config` turns them
into a ``jaxcnn train`` config.

airbench94 sums the loss over a batch of 1024, uses PyTorch SGD with ``lr = 11.5 / s`` and
``weight_decay = (0.0153 * 1024 / s) / lr`` where ``s = 1024 * (1 + 1 / (1 - momentum))``. For the
mean loss with the decay added to the gradient (optax, :mod:`jaxcnn.train.optim`) that is the
same update with ``learning_rate = 11.5 / (1 + 1 / (1 - momentum)) = 1.5`` and
``weight_decay = 0.0153 / 11.5``; the 64x learning rate of the BatchNorm biases is inside the
model (``bias_lr_scale``). Every parameter is decayed, biases too. The schedule rises linearly
from 0.2 to 1 over the first 23% of the steps and falls linearly to 0.07 (:func:`schedule`). Every
5 steps the weights take a lookahead step (:mod:`jaxcnn.train.lookahead`, the decay
``0.95 ** 5 * (t / T) ** 3``), and training ends on the averaged weights; the whitening bias
trains for the first 3 epochs only. ``benchmarks/speedrun_seeds.py`` and the GPU suite run all of
this (``gpu_suite.train_recipe``).

``jaxcnn train`` with :func:`get_config` has the same optimizer, schedule (``"linear"``,
warmup 23% of the run) and lookahead (``config.lookahead``), and differs in three ways: it
trains 10 whole epochs (airbench: 9.9); the whitening is fitted to the first training batch
(airbench: the first 5000 images); the whitening bias trains throughout (airbench: 3 epochs).

  jaxcnn train --config experiments/configs/cifar10_speedrun.py \
      --config.data_dir=../shared/data/cifar10
  python benchmarks/gpu_suite.py --data_dir ../shared/data/cifar10     # the exact recipe, timed
  python benchmarks/speedrun_seeds.py --data_dir ../shared/data/cifar10 --seeds 2   # accuracy

CPU accuracies over seeds are in BENCHMARKS.md (airbench94 published: 94.01%).

References: Jordan 2024, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU".
"""

from __future__ import annotations

from typing import Any

MOMENTUM = 0.85
RECIPE: dict[str, Any] = {
    "model": "airbench94",
    "batch_size": 1024,
    "epochs": 9.9,
    "label_smoothing": 0.2,
    "augment": ("crop(padding=2, mode='reflect')", "flip"),
    "tta": "flip_translate",
    "momentum": MOMENTUM,
    "nesterov": True,
    "learning_rate": 11.5 / (1 + 1 / (1 - MOMENTUM)),  # 1.5 for the mean loss
    "weight_decay": 0.0153 / 11.5,                      # L2 added to the mean loss's gradient
    "decay_biases": True,
    "warmup_fraction": 0.23,
    "initial_lr_multiplier": 0.2,
    "final_lr_multiplier": 0.07,
    "lookahead": {"every": 5, "base": 0.95, "power": 3.0},
    "whiten_bias_epochs": 3,
    "whitening_images": 5000,
    "mean": (0.4914, 0.4822, 0.4465),  # CIFAR-10 per-channel mean and std (airbench94)
    "std": (0.2470, 0.2435, 0.2616),
    "target_accuracy": 0.94,
}


def schedule(total_steps: int, *, warmup_fraction: float = RECIPE["warmup_fraction"],
             initial: float = RECIPE["initial_lr_multiplier"],
             final: float = RECIPE["final_lr_multiplier"]):
  """The learning-rate multiplier of step ``t``: ``initial`` -> 1 at ``warmup_fraction`` of
  ``total_steps`` (rounded down), then linearly to ``final`` at ``total_steps`` (airbench94): the
  ``"linear"`` schedule of :func:`jaxcnn.train.optim.make_schedule`, counted in steps."""
  from jaxcnn.train.optim import make_schedule  # pylint: disable=g-import-not-at-top

  if total_steps < 2:
    raise ValueError(f"total_steps must be >= 2, got {total_steps}.")
  peak = max(int(warmup_fraction * total_steps), 1)
  return make_schedule({"name": "linear", "warmup_epochs": peak, "warmup_start": initial,
                        "end_learning_rate": final}, learning_rate=1.0, steps_per_epoch=1,
                       num_epochs=total_steps)


def get_config():
  """The ``jaxcnn train`` config (the differences from airbench94 are in the module docstring)."""
  from jaxcnn.train.config import get_config as base_config  # pylint: disable=g-import-not-at-top

  config = base_config()
  config.dataset = "cifar10"
  config.val_size = 0
  config.preprocessing = "standardize"
  config.augment = RECIPE["augment"]
  config.model.name = RECIPE["model"]
  # The model's own defaults, spelled out (the base config's would replace them).
  config.model.norm = "batch(use_scale=False, use_bias=False, momentum=0.6, epsilon=1e-12)"
  config.model.kernel_init = f"kaiming_uniform(nonlinearity='leaky_relu', negative_slope={5 ** 0.5!r})"
  config.model.act = "gelu"
  config.num_epochs = 10
  config.batch_size = RECIPE["batch_size"]
  config.eval_batch_size = 1000
  config.label_smoothing = RECIPE["label_smoothing"]
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = RECIPE["learning_rate"]
  config.optimizer.momentum = RECIPE["momentum"]
  config.optimizer.nesterov = RECIPE["nesterov"]
  config.optimizer.weight_decay = RECIPE["weight_decay"]
  config.optimizer.decay_biases = RECIPE["decay_biases"]
  config.schedule.name = "linear"
  config.schedule.warmup_epochs = RECIPE["warmup_fraction"] * config.num_epochs
  config.schedule.warmup_start = RECIPE["initial_lr_multiplier"]
  config.schedule.end_learning_rate = RECIPE["final_lr_multiplier"]
  config.lookahead.every = RECIPE["lookahead"]["every"]
  config.lookahead.base = RECIPE["lookahead"]["base"]
  config.lookahead.power = RECIPE["lookahead"]["power"]
  config.log_every_steps = 49
  config.checkpoint_every_steps = 0
  return config
