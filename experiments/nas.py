"""NAS strategies: random, evolution and REINFORCE on a table; ENAS and DARTS with shared weights.

  python experiments/nas.py [--quick] [--config experiments/configs/nas.py[:quick]]
                            [--config.key=value ...] [--workdir DIR]

--quick (or the config argument ``:quick``) is the CI-sized setting of the config file;
--config.key=value overrides are applied after it.

Part 1 simulates many searches of each sample-based strategy on the shipped table of the 256
cells of nasbench201.SMALL (jaxcnn.search.tabular) at equal budgets: success probability and
regret. Part 2 runs the weight-sharing searches on the table's train/val split and looks their
derived cells up in the table (Dong & Yang 2020's question: do they collapse to parameter-free
cells?). Writes nas.md (the report), results.json, regret.png and weight_sharing.png to
runs/nas/ (runs/nas_quick/).
"""

import os
import sys

from jaxcnn.studies import common

if __name__ == "__main__":
  sys.exit(common.study_main(
      "jaxcnn.studies.nas",
      os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "nas.py"),
      sys.argv[1:]))
