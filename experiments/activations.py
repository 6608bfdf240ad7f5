"""Activation functions: their derivatives, and the same CNN trained with each (CS231n; the
"ReLU reaches 25% training error 6x faster than tanh" claim of Krizhevsky et al. 2012).

  python experiments/activations.py [--quick] [--config experiments/configs/activations.py[:quick]]
                                    [--config.key=value ...] [--workdir DIR]

--quick (or the config argument ``:quick``) is the CI-sized setting of the config file;
--config.key=value overrides are applied after it.

Writes activations.md (one row per activation: iterations to the target training error, final
errors, dead/saturated units), results.json, activation_functions.png, curves.png,
unit_stats.png and iterations.png to runs/activations/ (runs/activations_quick/ with --quick).
"""

import os
import sys

from jaxcnn.studies import common

if __name__ == "__main__":
  sys.exit(common.study_main(
      "jaxcnn.studies.activations",
      os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "activations.py"),
      sys.argv[1:]))
