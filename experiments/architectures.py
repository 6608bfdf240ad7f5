"""Architectures under one budget: accuracy against multiply-adds and parameters (Canziani et al.).

  python experiments/architectures.py [--quick] [--config experiments/configs/architectures.py[:quick]]
                                      [--config.key=value ...] [--workdir DIR]

--quick (or the config argument ``:quick``) is the CI-sized setting of the config file, ``:full``
the 7-epoch run on all of CIFAR-10 (hours; run it again with the same --workdir to resume);
--config.key=value overrides are applied after it.

Trains one representative per zoo family on a CIFAR-10 subset (digits with --quick) for the same
number of steps, every model on one device-resident copy of the data; writes architectures.md
(the report), results.json, accuracy_vs_cost.png and time_vs_macs.png to runs/architectures/
(runs/architectures_quick/).
"""

import os
import sys

from jaxcnn.studies import common

if __name__ == "__main__":
  sys.exit(common.study_main(
      "jaxcnn.studies.architectures",
      os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "architectures.py"),
      sys.argv[1:]))
