"""Config of the activation-function study (experiments/activations.py, jaxcnn.studies.activations).

The full setting trains the same small CNN with each of nine activations on an MNIST subset,
three seeds at once per activation (one population), sized for a shared 2-core CPU. The check
of Krizhevsky et al.'s CIFAR-10 claim, at the rates a 400-iteration sweep picked for each network
(docs/studies/activations/README.md: tanh 0.99x ReLU's iterations; about 70 minutes here), is:

  python experiments/activations.py --config.dataset=cifar10 --config.num_train=45000 \
      --config.num_val=5000 --config.num_steps=10000 --config.target_error=0.25 \
      --config.model.features='(32, 64)' --config.model.hidden=128 --config.batch_size=128 \
      --config.activations="('tanh', 'relu')" --config.plot_activations="('tanh', 'relu')" \
      --config.learning_rates.relu=0.01 --config.learning_rates.tanh=0.03 --config.num_seeds=1

The quick setting (``get_config("quick")``: ``--quick`` or ``--config ...activations.py:quick``)
trains two activations on the offline digits in seconds (CI).
"""

import os

import ml_collections

from jaxcnn.train.config import config_args

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "selu", "maxout", "swish")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_args(arg, quick=False)
  config = ml_collections.ConfigDict()
  config.quick = arg.quick  # records the setting (run folder NAME_quick); set it through arg
  config.dpi = 100
  # Data: subsets of the training split (validation is carved out of it, disjoint).
  config.dataset = "mnist"
  # ../shared/data beside the repository (this file is experiments/configs/ in it).
  config.data_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                 "shared", "data")
  config.num_train = 6000
  config.num_val = 1000
  config.data_seed = 0
  config.preprocessing = "standardize"
  # The network: the registered act_cnn (jaxcnn.models.small_cnns.ActCNN), no normalization.
  config.model = ml_collections.ConfigDict({"features": (8, 16), "hidden": 32, "kernel_size": 3})
  config.activations = ACTIVATIONS
  config.plot_activations = ACTIVATIONS
  # Kernel init matched to each nonlinearity (PyTorch's gains); anything not listed: He (relu).
  config.inits = ml_collections.ConfigDict({
      "sigmoid": "lecun_normal",
      "tanh": "kaiming_normal(nonlinearity='tanh')",
      "relu": "kaiming_normal(nonlinearity='relu')",
      "leaky_relu": "kaiming_normal(nonlinearity='leaky_relu')",
      "prelu": "kaiming_normal(nonlinearity='leaky_relu', negative_slope=0.25)",
      "elu": "kaiming_normal(nonlinearity='relu')",
      "selu": "lecun_normal",  # what self-normalization assumes (Klambauer et al. 2017)
      "maxout": "kaiming_normal(nonlinearity='relu')",
      "swish": "kaiming_normal(nonlinearity='relu')",
  })
  # Optimization: SGD with momentum, constant rate, no regularization (Krizhevsky et al. Fig. 1).
  config.learning_rate = 0.02
  # Per-activation rates (0 = learning_rate), e.g. --config.learning_rates.maxout=0.005.
  config.learning_rates = ml_collections.ConfigDict({a: 0.0 for a in ACTIVATIONS})
  config.momentum = 0.9
  config.batch_size = 32
  config.num_steps = 400
  config.num_seeds = 3  # trained at once with jax.vmap; seeds seed .. seed + num_seeds - 1
  config.seed = 0
  # Measurements.
  config.eval_every_steps = 50  # validation error and dead/saturated fractions
  config.stats_batch = 256  # fixed validation images for the dead/saturated fractions
  config.target_error = 0.10  # training error to reach (Krizhevsky et al.: 25% on CIFAR-10)
  config.smoothing_steps = 50  # training error = mean minibatch error over this many steps

  if arg.quick:  # CI-sized: the offline digits, a tiny network, two activations, 40 steps
    config.dataset = "digits"
    config.data_dir = ""
    config.num_train = 1200
    config.num_val = 300
    config.model = ml_collections.ConfigDict({"features": (4, 8), "hidden": 16, "kernel_size": 3})
    config.activations = ("tanh", "relu")
    config.num_seeds = 2
    config.num_steps = 40
    config.eval_every_steps = 20
    config.stats_batch = 64
    config.target_error = 0.8
    config.smoothing_steps = 10
    config.dpi = 50
  return config
