"""Config of the compound-scaling study (experiments/scaling.py, jaxcnn.search.scaling).

The full setting: a tiny EfficientNet-B0-like proxy (the zoo's EfficientNet with B0's first
three stages at width 0.5, jaxcnn.search.scaling.tiny_efficientnet) on a CIFAR-10 subset
downsampled to 16x16 (so that a larger resolution adds real detail, up to the native 32x32);
each (alpha, beta, gamma) of the feasible grid (or ``max_triples`` of them, the paper's triple
always among them) trained at phi = 1; then phi = 0 .. max_phi with the best triple and the
width-, depth- and resolution-only baselines at the same multiply-adds. On a GPU, e.g.:

  python experiments/scaling.py --config.max_triples=0 --config.num_train=45000 \
      --config.num_steps=5000 --config.num_seeds=3 --config.max_phi=4

The quick setting (``--quick``) trains a handful of models on the offline digits (CI).
"""

import os

import ml_collections

from jaxcnn.train.config import config_args

# B0's first stages (expansion, kernel, stride, channels, repeats), Tan & Le 2019, Table 1.
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_args(arg, quick=False)
  config = ml_collections.ConfigDict()
  config.quick = arg.quick  # records the setting (run folder NAME_quick); set it through arg
  config.dpi = 100
  # Data: subsets of the training split (validation carved out of it, disjoint).
  config.dataset = "cifar10"
  config.data_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                 "shared", "data")
  config.num_train = 5000
  config.num_val = 1000
  config.data_seed = 0
  # The proxy network and its base resolution (every scaled resolution is resized from the data).
  config.base_resolution = 16
  config.base_width = 0.5
  config.stages = STAGES
  # The grid: alpha, beta, gamma in [1, 2] with this step, |alpha beta^2 gamma^2 - 2| <= tol.
  config.step = 0.05
  config.tol = 0.1
  config.max_triples = 8  # 0: every feasible triple; else this many, evenly spaced, paper's in
  config.scale_with = "best"  # "best" (the search's winner) or "paper" (1.2, 1.1, 1.15)
  config.max_phi = 2
  # Proxy training: Adam, constant rate; seeds of one model train at once (a population).
  config.learning_rate = 3e-3
  config.batch_size = 64
  config.num_steps = 300
  config.num_seeds = 1
  config.seed = 0

  if arg.quick:  # CI-sized: the offline digits, two stages, two triples, phi up to 1
    config.dataset = "digits"
    config.data_dir = ""
    config.num_train = 600
    config.num_val = 200
    config.stages = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 1))
    config.max_triples = 2
    config.max_phi = 1
    config.num_steps = 40
    config.batch_size = 32
    config.dpi = 50
  return config
