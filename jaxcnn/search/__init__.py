"""Architecture search: a :class:`Space` of named choices, strategies, and the search loop.

Example::

  from jaxcnn import search
  space = search.Space({"op": ("conv_1x1", "conv_3x3"), "width": (16, 32)})
  strategy = search.strategies.get("evolution", population_size=20, sample_size=5)
  result = search.run(space, strategy, evaluate, budget=100, key=jax.random.PRNGKey(0),
                      workdir="runs/search")      # evaluate(archs int32 [n, 2]) -> rewards [n]
  result.best[0]                                  # {"index", "arch", "indices", "reward"}
"""

from jaxcnn.search import benchmarks, strategies
from jaxcnn.search.run import Result, run
from jaxcnn.search.space import Space

__all__ = ["Space", "Result", "benchmarks", "run", "strategies"]
