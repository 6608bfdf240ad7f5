"""Regularized evolution over the NAS-Bench-201 cells, each candidate trained on digits.

Every candidate cell is built by ``search.nasbench201.build`` (a narrow, shallow network: 8x8
digits) and trained for ``train.num_steps`` by ``search.evaluators.Trained``; its reward is the
validation accuracy. ``:quick`` is a handful of tiny candidates for a CPU check::

  jaxcnn search --config experiments/configs/search_nasbench201.py:quick
  jaxcnn search --config experiments/configs/search_nasbench201.py --config.budget=200

References:
  Dong & Yang 2020, "NAS-Bench-201" (ICLR); Real et al. 2019, "Regularized Evolution for Image
  Classifier Architecture Search" (AAAI).
"""

import ml_collections

from jaxcnn.train.config import config_args


def get_config(arg=None):
  arg = config_args(arg, quick=False)
  c = ml_collections.ConfigDict()
  c.space = "nasbench201"  # the 15,625 NAS-Bench-201 cells
  c.strategy = "evolution"  # a search.strategies name: random, evolution, reinforce
  c.strategy_kwargs = ml_collections.ConfigDict({  # keyword arguments of each strategy
      "random": {},
      "evolution": {"population_size": 10, "sample_size": 3},
      "reinforce": {"policy": "factorized", "learning_rate": 0.1, "baseline_decay": 0.9,
                    "entropy_weight": 0.0},
  })
  c.evaluator = "train"  # train each cell (train.*); or lookup, planted, onemax
  c.lookup = ml_collections.ConfigDict({  # evaluator "lookup": a recorded table
      "path": "",  # .npy of shape num_options, or .json {cell string or "i,j,..": reward/metrics}
      "reward_key": "accuracy",  # the metric used as reward when the values are metrics
  })
  c.train = ml_collections.ConfigDict({
      "dataset": "digits",
      "num_train": 1024,  # training examples (a seeded subset of digits' train split)
      "num_val": 256,  # validation examples, disjoint from num_train
      "data_seed": 0,
      "num_cells": 1,  # cells per stage (NAS-Bench-201: 5)
      "channels": 8,  # channels of the first stage (NAS-Bench-201: 16)
      "num_steps": 200,  # SGD steps per candidate
      "batch_size": 64,
      "learning_rate": 0.05,
      "momentum": 0.9,
      "seeds": (0,),  # each candidate's reward is the mean over these seeds
  })
  c.budget = 60  # candidates evaluated
  c.batch_size = 4  # candidates asked and trained together
  c.seed = 0  # the search's PRNG seed
  c.top_k = 5  # architectures listed in best.json
  if arg.quick:
    c.strategy_kwargs.evolution.population_size = 3
    c.strategy_kwargs.evolution.sample_size = 2
    c.train.num_train, c.train.num_val = 256, 64
    c.train.num_steps, c.train.batch_size = 10, 32
    c.budget, c.batch_size = 4, 2
  return c
