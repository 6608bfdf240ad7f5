"""REINFORCE over MnasNet's MBConv macro space on EfficientNet-B0's stages, trained on digits.

The space is ``search.mbconv.SPACE``: per stage of B0 the kernel (3, 5), the expansion (1, 3, 6),
squeeze-excite (0, 0.25) and the repeats (B0's -1, 0, +1), 28 choices; channels and strides are
B0's. Every candidate is built by ``search.mbconv.build`` (EfficientNet with the decoded stages,
narrowed by ``train.width`` and shortened by ``train.depth`` for 8x8 digits) and trained for
``train.num_steps`` by ``search.evaluators.Trained``; its reward is the validation accuracy
(``history.jsonl`` and ``best.json`` give its parameters and MACs too). ``:quick`` is three tiny
candidates for a CPU check::

  jaxcnn search --config experiments/configs/search_mbconv.py:quick
  jaxcnn search --config experiments/configs/search_mbconv.py --config.budget=100

References:
  Tan et al. 2019, "MnasNet: Platform-Aware Neural Architecture Search for Mobile" (CVPR),
  Section 4 (the space) and Section 5 (a REINFORCE-trained controller); Tan & Le 2019,
  "EfficientNet", Table 1 (B0).
"""

import ml_collections

from jaxcnn.train.config import config_args


def get_config(arg=None):
  arg = config_args(arg, quick=False)
  c = ml_collections.ConfigDict()
  c.space = "mbconv"  # MBConv choices per stage of EfficientNet-B0 (search.mbconv.SPACE)
  c.strategy = "reinforce"  # a search.strategies name: random, evolution, reinforce
  c.strategy_kwargs = ml_collections.ConfigDict({  # keyword arguments of each strategy
      "random": {},
      "evolution": {"population_size": 10, "sample_size": 3},
      "reinforce": {"policy": "factorized", "learning_rate": 0.1, "baseline_decay": 0.9,
                    "entropy_weight": 0.0},
  })
  c.evaluator = "train"  # train each candidate (train.*); or lookup, planted, onemax
  c.lookup = ml_collections.ConfigDict({  # evaluator "lookup": a recorded table
      "path": "",  # .json {"i,j,...": reward or metrics}, the 28 option indices comma-joined
      "reward_key": "accuracy",  # the metric used as reward when the values are metrics
  })
  c.train = ml_collections.ConfigDict({
      "dataset": "digits",
      "num_train": 1024,  # training examples (a seeded subset of digits' train split)
      "num_val": 256,  # validation examples, disjoint from num_train
      "data_seed": 0,
      "width": 0.25,  # EfficientNet's width multiplier (channels rounded to multiples of 8)
      "depth": 0.5,  # EfficientNet's depth multiplier of each stage's repeats (rounded up)
      "dropout_rate": 0.0,  # dropout before the classifier (B0: 0.2)
      "drop_path_rate": 0.0,  # stochastic depth of the last block (B0: 0.2)
      "num_steps": 200,  # SGD steps per candidate
      "batch_size": 64,
      "learning_rate": 0.05,
      "momentum": 0.9,
      "seeds": (0,),  # each candidate's reward is the mean over these seeds
  })
  c.budget = 40  # candidates evaluated
  c.batch_size = 4  # candidates asked and trained together
  c.seed = 0  # the search's PRNG seed
  c.top_k = 5  # architectures listed in best.json
  if arg.quick:
    c.train.num_train, c.train.num_val = 256, 64
    c.train.depth = 0.25
    c.train.num_steps, c.train.batch_size = 10, 32
    c.budget, c.batch_size = 3, 3
  return c
