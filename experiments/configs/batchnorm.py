"""Config of the batch-normalization study (experiments/batchnorm.py, jaxcnn.studies.batchnorm).

Quick setting (CI; ``--quick``, i.e. ``get_config("quick")``): the offline digits, shallower
nets, one kernel init at init, two batch sizes, one epoch.
"""

import os

import ml_collections

from jaxcnn.train.config import config_args


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_args(arg, quick=False)
  config = ml_collections.ConfigDict()
  config.quick = arg.quick  # records the setting (run folder NAME_quick); set it through arg
  config.dataset = "mnist"
  # ../shared/data/mnist beside the repository (this file is experiments/configs/ in it).
  config.data_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                 "shared", "data", "mnist")
  config.num_train = 10_000  # random subsets (seed) of the train and test splits; 0: all of it
  config.num_test = 2_000
  config.seed = 0
  config.norms = ("none", "batch")  # jaxcnn.nn.layers.normalize specs; "none" = no BN
  # Part 1: the deep MLP at initialization (forward pass only).
  config.init = ml_collections.ConfigDict()
  config.init.depth = 50
  config.init.width = 100
  config.init.num_inputs = 1000  # test images fed as one batch
  # The first is plotted; without biases lecun_normal computes
  # the same function times 2**(-depth/2).
  config.init.kernel_inits = ("kaiming_normal", "lecun_normal")
  config.init.layers_shown = (1, 2, 5, 10, 20, 30, 40, 50)  # histogram columns (1-based)
  # Part 2: training over learning rates x batch sizes.
  config.train = ml_collections.ConfigDict()
  config.train.depth = 10
  config.train.width = 100
  config.train.kernel_init = "kaiming_normal"
  config.train.learning_rates = (0.003, 0.03, 0.3)
  config.train.batch_sizes = (2, 4, 16, 64)
  config.train.momentum = 0.9
  config.train.num_epochs = 3
  if arg.quick:
    config.dataset = "digits"
    config.data_dir = ""
    config.num_train = 0  # all 1,618 training and 179 test digits
    config.num_test = 0
    config.init.depth = 10
    config.init.kernel_inits = config.init.kernel_inits[:1]
    config.train.depth = 3
    config.train.batch_sizes = (2, 32)
    config.train.num_epochs = 1
  return config
