"""Weight initialization: per-layer activation and gradient statistics under seven inits.

  python experiments/initialization.py [--config experiments/configs/initialization.py]
                                       [--config.key=value] [--workdir DIR] [--quick]

Writes initialization.md (tables of parts a, b, c), mlp_std_by_layer.png, deep_at_init.png,
deep_after_training.png, deep_training.png and symmetry.png to runs/initialization/
(runs/initialization_quick/ with --quick).
"""

import os
import sys

from jaxcnn.studies import common, initialization

if __name__ == "__main__":
  sys.exit(common.study_main(
      initialization.run,
      os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "initialization.py"),
      sys.argv[1:]))
