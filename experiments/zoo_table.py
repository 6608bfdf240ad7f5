"""The model zoo as a table: parameters and multiply-adds of every model beside the published ones.

  python experiments/zoo_table.py [--quick] [--config experiments/configs/zoo_table.py[:quick]]
                                  [--config.key=value ...] [--workdir DIR]

--quick (or the config argument ``:quick``) is the CI-sized setting of the config file;
--config.key=value overrides are applied after it.

Writes zoo_table.md (ours beside published, with sources, and the train-step images/s of the
smaller models on the present device) and params_macs.png (parameters against multiply-adds,
log-log, one colour per family) to runs/zoo_table/ (runs/zoo_table_quick/ with --quick).
"""

import os
import sys

from jaxcnn.studies import common

if __name__ == "__main__":
  sys.exit(common.study_main(
      "jaxcnn.studies.zoo",
      os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "zoo_table.py"),
      sys.argv[1:]))
