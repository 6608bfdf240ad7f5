"""Backpropagation on computational graphs (CS231n): the chain rule node by node beside jax.grad.

  python experiments/backprop.py [--quick] [--config experiments/configs/backprop.py[:quick]]
                                 [--config.key=value ...] [--workdir DIR]

--quick (or the config argument ``:quick``) is the CI-sized setting of the config file;
--config.key=value overrides are applied after it.

Writes backprop.md (forward/backward tables per example), results.json, graph_*.png and the jaxpr
drawings mlp_jaxpr.png / mlp_grad_jaxpr.png to runs/backprop/ (runs/backprop_quick/ with --quick).
"""

import os
import sys

from jaxcnn.studies import common

if __name__ == "__main__":
  sys.exit(common.study_main(
      "jaxcnn.studies.backprop",
      os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "backprop.py"),
      sys.argv[1:]))
