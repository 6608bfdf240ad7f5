"""A synthetic search in seconds: regularized evolution on a planted-optimum table.

The space is a grid of six choices of five options (15,625 architectures, as many as the
NAS-Bench-201 cells); the reward is the number of choices matching a planted random
architecture plus a small fixed tiebreak (``search.benchmarks.planted``), so the optimum is known
and ``best.json`` records it::

  jaxcnn search --config experiments/configs/search_planted.py
  jaxcnn search --config experiments/configs/search_planted.py --config.strategy=reinforce
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.space = "synthetic"  # "nasbench201" or "synthetic" (a grid of num_options)
  c.num_options = (5, 5, 5, 5, 5, 5)  # options per choice of the synthetic space
  c.strategy = "evolution"  # a search.strategies name: random, evolution, reinforce
  c.strategy_kwargs = ml_collections.ConfigDict({  # keyword arguments of each strategy
      "random": {},
      "evolution": {"population_size": 20, "sample_size": 5},
      "reinforce": {"policy": "factorized", "learning_rate": 0.1, "baseline_decay": 0.9,
                    "entropy_weight": 0.0},
  })
  c.evaluator = "planted"  # planted, onemax, lookup or train
  c.planted_seed = 0  # the planted optimum's seed
  c.lookup = ml_collections.ConfigDict({  # evaluator "lookup": a recorded table
      "path": "",  # .npy of shape num_options, or .json {cell string or "i,j,..": reward/metrics}
      "reward_key": "accuracy",  # the metric used as reward when the values are metrics
  })
  c.budget = 200  # evaluations
  c.batch_size = 10  # architectures asked and evaluated together
  c.seed = 0  # the search's PRNG seed
  c.top_k = 5  # architectures listed in best.json
  return c
