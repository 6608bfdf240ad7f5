"""Regularized evolution over the NASNet cell genotypes, each candidate trained on digits.

The space is ``search.nasnet.SPACE``: a normal and a reduction cell of five blocks, each block two
inputs and two of the 13 NASNet ops, and which read states the cell concatenates (50 choices).
Every candidate is built by ``search.nasnet.build`` (the NASNet skeleton with the CIFAR stem,
``train.num_cells`` normal cells per stage and ``train.penultimate_filters`` / 24 filters in the
first stage: a tiny network for 8x8 digits) and trained for ``train.num_steps`` by
``search.evaluators.Trained``; its reward is the validation accuracy. ``:quick`` is two tiny
candidates for a CPU check (each compiles for most of its half minute)::

  jaxcnn search --config experiments/configs/search_nasnet.py:quick
  jaxcnn search --config experiments/configs/search_nasnet.py --config.budget=100

References:
  Zoph et al. 2018, "Learning Transferable Architectures for Scalable Image Recognition" (CVPR),
  Section 3; Real et al. 2019, "Regularized Evolution for Image Classifier Architecture Search"
  (AAAI), which searched this space with evolution.
"""

import ml_collections

from jaxcnn.train.config import config_args


def get_config(arg=None):
  arg = config_args(arg, quick=False)
  c = ml_collections.ConfigDict()
  c.space = "nasnet"  # NASNet's normal and reduction cells (search.nasnet.SPACE, 50 choices)
  c.strategy = "evolution"  # a search.strategies name: random, evolution, reinforce
  c.strategy_kwargs = ml_collections.ConfigDict({  # keyword arguments of each strategy
      "random": {},
      "evolution": {"population_size": 10, "sample_size": 3},
      "reinforce": {"policy": "factorized", "learning_rate": 0.1, "baseline_decay": 0.9,
                    "entropy_weight": 0.0},
  })
  c.evaluator = "train"  # train each candidate (train.*); or lookup, planted, onemax
  c.lookup = ml_collections.ConfigDict({  # evaluator "lookup": a recorded table
      "path": "",  # .json {"i,j,...": reward or metrics}, the 50 option indices comma-joined
      "reward_key": "accuracy",  # the metric used as reward when the values are metrics
  })
  c.train = ml_collections.ConfigDict({
      "dataset": "digits",
      "num_train": 1024,  # training examples (a seeded subset of digits' train split)
      "num_val": 256,  # validation examples, disjoint from num_train
      "data_seed": 0,
      "num_cells": 1,  # normal cells per stage (NASNet-A mobile: 4)
      "penultimate_filters": 48,  # 24x the first stage's filters (NASNet-A mobile: 1056)
      "stem_features": 8,  # channels of the stem convolution (mobile: 32)
      "filter_multiplier": 2,  # filters grow by this at each reduction cell
      "stem": "cifar",  # "cifar" (a 3x3 stride-1 convolution) or "imagenet" (two reduction cells)
      "dropout_rate": 0.0,  # dropout before the classifier (NASNet: 0.5)
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
    c.strategy_kwargs.evolution.population_size = 2
    c.strategy_kwargs.evolution.sample_size = 2
    c.train.num_train, c.train.num_val = 256, 64
    c.train.num_steps, c.train.batch_size = 10, 32
    c.budget, c.batch_size = 2, 2
  return c
