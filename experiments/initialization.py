"""Weight initialization: per-layer activation and gradient statistics under seven inits.

  python experiments/initialization.py [--quick] [--config experiments/configs/initialization.py[:quick]]
                                       [--config.key=value ...] [--workdir DIR]

--quick (or the config argument ``:quick``) is the CI-sized setting of the config file;
--config.key=value overrides are applied after it.

Writes initialization.md (tables of parts a, b, c), mlp_std_by_layer.png, deep_at_init.png,
deep_after_training.png, deep_training.png, symmetry.png and results.json to runs/initialization/
(runs/initialization_quick/ with --quick).
"""

import os
import sys

from jaxcnn.studies import common

if __name__ == "__main__":
  sys.exit(common.study_main(
      "jaxcnn.studies.initialization",
      os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "initialization.py"),
      sys.argv[1:]))
