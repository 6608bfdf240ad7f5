"""ENAS over the NAS-Bench-201 cells: an LSTM controller and shared weights trained in turn.

Pham et al. 2018's alternation through ``jaxcnn.search.enas``: every search step asks
``batch_size`` cells of the controller (``strategy="enas"``, REINFORCE with the paper's
settings), the ``shared_training`` evaluator (``enas.SharedTraining``) trains the supernet's
shared weights for ``shared.train_steps`` SGD steps along their paths and scores them on the
validation split, and the controller learns from those accuracies. ``enas.search`` saves the
shared weights beside the controller, so ``--resume`` continues exactly; after the search
``enas.final`` scores the controller's greedy cell and ``shared.final_samples`` of its samples
with the shared weights (``best.json``'s ``final``). The settings are docs/search.md's ENAS
example (the 256-cell ``nasbench201.SMALL`` space on the offline digits); ``:quick`` is a tiny
CPU check::

  jaxcnn search --config experiments/configs/search_enas.py:quick
  jaxcnn search --config experiments/configs/search_enas.py:quick --config.space=nasbench201

References:
  Pham, Guan, Zoph, Le & Dean 2018, "Efficient Neural Architecture Search via Parameter
  Sharing" (ICML), Sections 2.2 and 3.2; Dong & Yang 2020, "NAS-Bench-201" (ICLR), Section 5.
"""

import ml_collections

from jaxcnn.train.config import config_args


def get_config(arg=None):
  arg = config_args(arg, quick=False)
  c = ml_collections.ConfigDict()
  c.space = "nasbench201_small"  # nasbench201_small (256 cells) or nasbench201 (15,625)
  c.strategy = "enas"  # enas; or random, evolution, reinforce with the same shared weights
  c.strategy_kwargs = ml_collections.ConfigDict({  # keyword arguments of each strategy
      "enas": {"learning_rate": 0.01, "hidden": 100},  # enas.ENAS, the paper's but this step size
      "random": {},
      "evolution": {"population_size": 20, "sample_size": 5},
      "reinforce": {"policy": "factorized", "learning_rate": 0.1},
  })
  c.evaluator = "shared_training"  # enas.SharedTraining: train the shared weights, then score
  c.data = ml_collections.ConfigDict({
      "dataset": "digits",
      "num_train": 1200,  # the shared weights' training examples (a seeded subset)
      "num_val": 300,  # the rewards' validation examples, disjoint from num_train
      "data_seed": 0,
  })
  c.shared = ml_collections.ConfigDict({
      "num_cells": 1,  # the supernet's cells per stage (NAS-Bench-201: 5)
      "channels": 8,  # channels of its first stage (NAS-Bench-201: 16)
      "train_steps": 10,  # SGD steps on the shared weights per search step
      "batch_size": 32,  # training examples per SGD step
      "learning_rate": 0.05,
      "momentum": 0.9,  # Nesterov momentum (0: plain SGD)
      "mode": "auto",  # how the children are scored: auto, vmap or map
      "final_samples": 50,  # enas.final: controller samples scored after the search
  })
  c.budget = 300  # architectures asked (and trained on) in all
  c.batch_size = 10  # architectures per search step
  c.seed = 0  # the search's key (PRNGKey(seed)), the weights and the data order; final: seed + 1
  c.top_k = 5  # architectures listed in best.json
  if arg.quick:  # two search steps of four cells on a narrow supernet
    c.strategy_kwargs.enas.hidden, c.strategy_kwargs.enas.learning_rate = 8, 0.05
    c.data.num_train, c.data.num_val = 64, 32
    c.shared.channels, c.shared.train_steps, c.shared.batch_size = 4, 2, 16
    c.shared.final_samples = 4
    c.budget, c.batch_size, c.top_k = 8, 4, 3
  return c
