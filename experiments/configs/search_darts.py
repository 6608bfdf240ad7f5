"""DARTS over the NAS-Bench-201 cells: the continuous relaxation, searched by gradient descent.

``jaxcnn.search.darts.search``: every edge of the relaxed network mixes its ops by
``softmax(alpha[edge])``; each step takes an Adam step of ``alpha`` on a validation batch (first
order with ``darts.xi = 0``, else the exact second-order gradient) and a momentum-SGD step of the
weights on a training batch. The derived cell is each edge's strongest op (``strategy``
``"darts"``, or ``"darts(keep_none=False)"`` for the original rule that never picks ``none``).
``space`` ``nasbench201_small`` restricts the ops to ``nasbench201.SMALL``'s (its mask),
``nasbench201`` allows all five on every edge. The settings are docs/search.md's DARTS example;
``:quick`` is a tiny first-order CPU check::

  jaxcnn search --config experiments/configs/search_darts.py:quick
  jaxcnn search --config experiments/configs/search_darts.py:quick --config.space=nasbench201

References:
  Liu, Simonyan & Yang 2019, "DARTS: Differentiable Architecture Search" (ICLR), Sections
  2.2-2.4 and 3.1.1; Dong & Yang 2020, "NAS-Bench-201" (ICLR), Section 5.
"""

import ml_collections

from jaxcnn.train.config import config_args


def get_config(arg=None):
  arg = config_args(arg, quick=False)
  c = ml_collections.ConfigDict()
  c.space = "nasbench201_small"  # nasbench201_small (SMALL's ops: its mask) or nasbench201 (all)
  c.strategy = "darts"  # darts: derive with none as a candidate; darts(keep_none=False): never
  c.strategy_kwargs = ml_collections.ConfigDict({  # keyword arguments of each strategy
      "darts": {"keep_none": True},
  })
  c.data = ml_collections.ConfigDict({
      "dataset": "digits",
      "num_train": 1000,  # the weights' examples (a seeded subset)
      "num_val": 500,  # alpha's examples, disjoint from num_train
      "data_seed": 0,
  })
  c.darts = ml_collections.ConfigDict({
      "num_cells": 1,  # cells per stage of the relaxed network (NAS-Bench-201: 5)
      "channels": 8,  # channels of its first stage (NAS-Bench-201: 16)
      "num_steps": 300,  # alpha-and-weight steps
      "batch_size": 64,  # examples per batch, training and validation
      "xi": 0.025,  # 0: first order; > 0: second order, the unrolling step (the paper: 0.025)
      "learning_rate": 0.025,  # the weights' SGD, cosine-decayed to min_learning_rate
      "min_learning_rate": 0.001,
      "momentum": 0.9,
      "weight_decay": 3e-4,
      "alpha_learning_rate": 3e-4,  # alpha's Adam, betas (0.5, 0.999)
      "alpha_weight_decay": 1e-3,
  })
  c.seed = 0  # the initial weights, alpha and both data orders
  if arg.quick:
    c.data.num_train, c.data.num_val = 64, 32
    c.darts.channels, c.darts.num_steps, c.darts.batch_size, c.darts.xi = 4, 3, 16, 0.0
  return c
