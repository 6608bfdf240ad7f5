"""Config of the weight-initialization study (experiments/initialization.py,
jaxcnn.studies.initialization).

Quick setting (CI; ``--quick``, i.e. ``get_config("quick")``): the offline digits, 4-layer nets
of width 4, five inits, a few steps.
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
  config.num_train = 3000  # random subsets (seed) of the train and test splits; 0: all of it
  config.num_test = 2000
  config.seed = 0
  config.stats_batch = 256  # training images for the per-layer statistics and LSUV/Kraehenbuehl
  config.dpi = 100
  # (a) The CS231n experiment: bias-free MLP, unit-Gaussian inputs (jaxcnn.studies.init_study).
  config.mlp = ml_collections.ConfigDict()
  config.mlp.nonlinearities = ("tanh", "relu")
  config.mlp.inits = ("normal(stddev=0.01)", "normal(stddev=1.0)", "xavier_normal",
                      "kaiming_normal(nonlinearity='relu')")
  config.mlp.num_layers = 10
  config.mlp.width = 500
  config.mlp.num_samples = 1000
  # (b) Deep plain and residual ReLU nets without normalization: 6n + 2 weight layers.
  config.deep = ml_collections.ConfigDict()
  config.deep.archs = ("plain", "residual")
  # Initializer specs (jaxcnn.nn.initializers) or the procedures lsuv, kraehenbuehl, fixup
  # (fixup: residual nets only).
  config.deep.inits = ("normal(stddev=0.01)", "xavier_normal", "kaiming_normal",
                       "orthogonal(gain=1.4142135623730951)", "lsuv", "kraehenbuehl", "fixup")
  config.deep.stage_sizes = (3, 3, 3)  # 20 weight layers, the ResNet-20 layout
  config.deep.num_filters = 8
  config.deep.act = "relu"
  config.deep.learning_rate = 0.02
  config.deep.momentum = 0.9
  config.deep.batch_size = 64
  config.deep.num_epochs = 3
  # True: the inits of a network train as one population (vmapped on GPU/TPU, a loop over the
  # models on CPU); False: one at a time through one compiled step (XLA:CPU ran six vmapped
  # 20-layer conv nets 3.7x slower, before populations looped on CPU).
  config.deep.together = False
  # (c) Symmetry: constant init keeps every unit of a layer equal under gradient descent.
  config.symmetry = ml_collections.ConfigDict()
  config.symmetry.inits = ("constant(value=0.5)", "kaiming_normal")
  config.symmetry.widths = (32, 32)
  config.symmetry.num_steps = 200
  config.symmetry.learning_rate = 1e-3
  config.symmetry.batch_size = 128
  if arg.quick:
    config.dataset = "digits"
    config.data_dir = ""
    config.num_train = 0  # the whole digits splits
    config.num_test = 0
    config.dpi = 60
    config.mlp.width = 100
    config.mlp.num_samples = 200
    config.deep.inits = ("normal(stddev=0.01)", "kaiming_normal", "lsuv", "kraehenbuehl", "fixup")
    config.deep.stage_sizes = (1,)  # 4 weight layers
    config.deep.num_filters = 4
    config.deep.num_epochs = 1
    config.symmetry.num_steps = 20
  return config
