"""The base training config: every field :func:`jaxcnn.train.loop.fit` reads, with its default.

This file is the default ``--config`` of ``jaxcnn train``. Config files under
``experiments/configs/`` start from :func:`get_config` and change what they need (a
``get_config(arg)`` parses its argument, e.g. ``path.py:quick``, with :func:`config_args`); every
field can be overridden from the command line (``--config.optimizer.name=adamw``). The defaults
train ``simple_cnn`` on the offline digits data set in well under a minute on CPU.
"""

from __future__ import annotations

import types
from typing import Any

import ml_collections

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def config_args(arg: str | None = None, **defaults: Any) -> types.SimpleNamespace:
  """Parses the argument of a config file's ``get_config(arg=None)`` (big_vision style).

  ``--config path.py:quick`` (or ``--quick`` of a study script) calls ``get_config("quick")``;
  a config file turns that into settings with::

    def get_config(arg=None):
      arg = config_args(arg, quick=False)
      config = ...
      if arg.quick:
        config.num_steps = 40

  Args:
    arg: comma-separated ``name`` (a boolean set to True) or ``name=value`` items, e.g.
      ``"quick"``, ``"quick=False"``, ``"quick,seeds=3"``; None or "" gives the defaults.
    **defaults: every accepted name with its default; a value is parsed to the type of its
      default (bool: true/false/1/0/yes/no).

  Returns:
    A namespace with one attribute per name of ``defaults``.

  Raises:
    ValueError: for a name not in ``defaults`` or a value that does not parse.
  """
  values = dict(defaults)
  for item in (arg or "").split(","):
    item = item.strip()
    if not item:
      continue
    name, sep, text = item.partition("=")
    name = name.strip()
    if name not in defaults:
      raise ValueError(f"Unknown config argument {name!r} in {arg!r}; known: "
                       f"{', '.join(sorted(defaults)) or 'none'}.")
    default = defaults[name]
    if not sep:
      if not isinstance(default, bool):
        raise ValueError(f"Config argument {name!r} needs a value ({name}=...).")
      values[name] = True
      continue
    text = text.strip()
    if isinstance(default, bool):
      if text.lower() not in _TRUE + _FALSE:
        raise ValueError(f"Config argument {name!r} must be true or false, got {text!r}.")
      values[name] = text.lower() in _TRUE
    elif default is None or isinstance(default, str):
      values[name] = text
    else:
      try:
        values[name] = type(default)(text)
      except (TypeError, ValueError):
        raise ValueError(f"Config argument {name!r} must be a {type(default).__name__}, "
                         f"got {text!r}.") from None
  return types.SimpleNamespace(**values)


def get_config() -> ml_collections.ConfigDict:
  """The default config (digits, simple_cnn, SGD with Nesterov momentum, cosine schedule)."""
  c = ml_collections.ConfigDict()
  # Data.
  c.dataset = "digits"        # jaxcnn.data.datasets name: digits, mnist, fashion_mnist, cifar10, ...
  c.data_dir = ""             # folder with {split}.npz in the shared-data format; "" = tfds/builtin
  c.val_size = 0.1            # validation carved out of train: fraction, count, or 0 for none
  c.data_seed = 0             # seed of the train/validation split
  c.preprocessing = "standardize"  # jaxcnn.data.preprocessing spec, fitted on the training split
  c.augment = ()              # jaxcnn.data.augment specs, e.g. ("crop(padding=4)", "flip")
  # Streamed data sets (datasets.info(name).in_memory is False: imagenette, imagenet2012) are
  # read batch by batch; they evaluate on their own validation/test splits (val_size is unused).
  c.image_size = 224          # streamed: side of the square crops
  c.preprocessing_examples = 5000  # streamed: the transform is fitted on this many training
                                   # images (center crops), a bounded sample, not the whole split
  c.steps_per_epoch = 0       # > 0 shortens the epoch to that many steps; 0 = one pass
  # Model: name plus keyword overrides passed to jaxcnn.models.create_model.
  c.model = ml_collections.ConfigDict(
      {"name": "simple_cnn", "act": "relu", "norm": "batch", "kernel_init": "kaiming_normal"})
  # Fine-tuning (experiments/configs/finetune.py): start from torchvision or timm weights of
  # model.name (jaxcnn.models.pretrained), with a new head for the data's classes.
  c.init_from = ml_collections.ConfigDict({
      "weights": "",          # .safetensors (or .pth, needs torch) file; "" = random init
      "source": "torchvision",  # torchvision or timm (their parameter names differ)
      "train": "all",         # all: fine-tune every layer; head: freeze the backbone
  })
  # Optimization.
  c.num_epochs = 15
  c.batch_size = 64
  c.eval_batch_size = 500
  c.optimizer = ml_collections.ConfigDict({
      "name": "sgd",          # sgd, adam, adamw
      "learning_rate": 0.05,
      "momentum": 0.9,        # sgd
      "nesterov": True,       # sgd
      "b1": 0.9, "b2": 0.999, "eps": 1e-8,  # adam, adamw
      "weight_decay": 5e-4,   # on kernels only (rank >= 2 parameters)
      "decay_biases": False,  # True: weight decay on every parameter (airbench94)
      "grad_clip_norm": 0.0,  # 0 = no clipping
  })
  c.schedule = ml_collections.ConfigDict({
      "name": "cosine",       # constant, cosine, step, linear
      "warmup_epochs": 1.0,
      "warmup_start": 0.0,    # the warmup starts at this fraction of the learning rate
      "decay_epochs": (),     # step: epochs at which the rate is multiplied by decay_factor
      "decay_factor": 0.1,
      "end_learning_rate": 0.0,  # cosine, linear: the last step's rate (times learning_rate)
  })
  c.label_smoothing = 0.0
  c.ema_decay = 0.0           # > 0 keeps an EMA of the weights and evaluates with it
  # Lookahead weight averaging (jaxcnn.train.lookahead, airbench94): every `every` steps and
  # after the last, slow <- d * slow + (1 - d) * fast and fast <- slow, with
  # d = base ** every * (t / total_steps) ** power; every = 0 turns it off.
  c.lookahead = ml_collections.ConfigDict({"every": 0, "base": 0.95, "power": 3.0})
  c.dtype = "float32"         # compute dtype: float32 or bfloat16 (parameters stay float32)
  # Runs.
  c.seed = 0                  # model m of num_models uses seed + m
  c.num_models = 1            # > 1 trains that many seeds at once, as one population
  # Hyperparameter sweep in one population: a tuple of values replaces optimizer.<name> per model
  # (equal lengths, zipped), e.g. --config.sweep.learning_rate="(0.05, 0.1, 0.2)"; every value
  # trains num_models seeds, so len(values) * num_models models train at once.
  c.sweep = ml_collections.ConfigDict({"learning_rate": (), "weight_decay": ()})
  c.log_every_steps = 50      # host sync, NaN check and progress bar update
  c.checkpoint_every_steps = 0  # 0 = only at the end (and by time, below)
  c.checkpoint_every_minutes = 5.0  # also checkpoint when this long has passed; 0 = not by time
  c.keep_checkpoints = 3
  c.stop_after_steps = 0      # > 0 simulates a kill after that many steps (tests of --resume)
  c.progress_bar = True
  c.distributed = False       # call jax.distributed.initialize() (multi-host)
  c.tensorboard = True        # TensorBoard logs in <workdir>/tb (tensorboardX): one run per model
  c.layer_stats_every_epochs = 0  # > 0: per-layer weight norms and histograms to TensorBoard
  return c
