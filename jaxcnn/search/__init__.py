"""Architecture search: a :class:`Space` of named choices, strategies, and the search loop.

Example::

  from jaxcnn import search
  space = search.Space({"op": ("conv_1x1", "conv_3x3"), "width": (16, 32)})
  strategy = search.strategies.get("evolution", population_size=20, sample_size=5)
  result = search.run(space, strategy, evaluate, budget=100, key=jax.random.PRNGKey(0),
                      workdir="runs/search")      # evaluate(archs int32 [n, 2]) -> rewards [n]
  result.best[0]                                  # {"index", "arch", "indices", "reward"}

Spaces over the zoo's blocks: :mod:`~jaxcnn.search.nasbench201` (the NAS-Bench-201 cell space,
``nasbench201.SPACE`` and ``nasbench201.build(arch)``; ``nasbench201.SMALL``, its 256-cell
subspace) and its shared-weight :mod:`~jaxcnn.search.supernet`, :mod:`~jaxcnn.search.nasnet`
(NASNet cell genotypes) and :mod:`~jaxcnn.search.mbconv` (MnasNet's MBConv macro space). Weight
sharing: :mod:`~jaxcnn.search.enas` and :mod:`~jaxcnn.search.darts`. A tabular benchmark of all
256 small cells trained on the digits and on a CIFAR-10 subset: :mod:`~jaxcnn.search.tabular`.

Evaluators (:mod:`~jaxcnn.search.evaluators`): ``Lookup``, ``Trained`` (the population trainer),
``SharedWeights`` (the supernet), ``Distributed`` (Ray actors, ``pip install "jaxcnn[ray]"``);
costs and constrained rewards (:mod:`~jaxcnn.search.costs`), EfficientNet compound scaling
(:mod:`~jaxcnn.search.scaling`), and the figures (:mod:`~jaxcnn.search.plots`: rewards, the
found cell, the Pareto front, scaling curves). The command line: ``jaxcnn search``
(:mod:`~jaxcnn.search.cli`).
"""

from jaxcnn.search import (benchmarks, costs, darts, enas, evaluators, mbconv, nasbench201, nasnet,
                           plots, scaling, strategies, supernet, tabular)
from jaxcnn.search.costs import Constrained, Costs, mnas_reward, pareto_front
from jaxcnn.search.distributed import Distributed
from jaxcnn.search.evaluators import Lookup, SharedWeights, Trained, train_supernet
from jaxcnn.search.run import Result, run
from jaxcnn.search.space import Space
from jaxcnn.search.supernet import SuperNet

__all__ = ["Constrained", "Costs", "Distributed", "Lookup", "Result", "SharedWeights", "Space",
           "SuperNet", "Trained", "benchmarks", "costs", "darts", "enas", "evaluators", "mbconv",
           "mnas_reward", "nasbench201", "nasnet", "pareto_front", "plots", "run", "scaling",
           "strategies", "supernet", "tabular", "train_supernet"]
