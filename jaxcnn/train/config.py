"""The base training config: every field :func:`jaxcnn.train.loop.fit` reads, with its default.

Config files under ``experiments/configs/`` start from :func:`get_config` and change what they
need; every field can be overridden from the command line (``--config.optimizer.name=adamw``).
The defaults train ``simple_cnn`` on the offline digits data set in well under a minute on CPU.
"""

from __future__ import annotations

import ml_collections


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
      "grad_clip_norm": 0.0,  # 0 = no clipping
  })
  c.schedule = ml_collections.ConfigDict({
      "name": "cosine",       # constant, cosine, step
      "warmup_epochs": 1.0,
      "decay_epochs": (),     # step: epochs at which the rate is multiplied by decay_factor
      "decay_factor": 0.1,
      "end_learning_rate": 0.0,  # cosine
  })
  c.label_smoothing = 0.0
  c.ema_decay = 0.0           # > 0 keeps an EMA of the weights and evaluates with it
  c.dtype = "float32"         # compute dtype: float32 or bfloat16 (parameters stay float32)
  # Runs.
  c.seed = 0                  # model m of num_models uses seed + m
  c.num_models = 1            # > 1 trains that many seeds at once with jax.vmap
  # Hyperparameter sweep in one vmapped run: a tuple of values replaces optimizer.<name> per model
  # (equal lengths, zipped), e.g. --config.sweep.learning_rate="(0.05, 0.1, 0.2)"; every value
  # trains num_models seeds, so len(values) * num_models models train at once.
  c.sweep = ml_collections.ConfigDict({"learning_rate": (), "weight_decay": ()})
  c.log_every_steps = 50      # host sync, NaN check and progress bar update
  c.checkpoint_every_steps = 0  # 0 = only at the end
  c.keep_checkpoints = 3
  c.stop_after_steps = 0      # > 0 simulates a kill after that many steps (tests of --resume)
  c.progress_bar = True
  c.distributed = False       # call jax.distributed.initialize() (multi-host)
  return c
