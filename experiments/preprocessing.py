"""Data preprocessing (CS231n): loss sensitivity, the zig-zag of positive inputs, training speed.

  python experiments/preprocessing.py [--quick] [--config experiments/configs/preprocessing.py[:quick]]
                                      [--config.key=value ...] [--workdir DIR]

--quick (or the config argument ``:quick``) is the CI-sized setting of the config file;
--config.key=value overrides are applied after it.

Writes preprocessing.md (tables: zig-zag, sensitivity, training speed) and zigzag.png,
data_clouds.png, transformed_images.png, pca_components.png, spectra.png, curves.png and
lr_sweep.png and results.json to runs/preprocessing/ (runs/preprocessing_quick/ with --quick).
"""

import os
import sys

from jaxcnn.studies import common

if __name__ == "__main__":
  sys.exit(common.study_main(
      "jaxcnn.studies.preprocessing",
      os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "preprocessing.py"),
      sys.argv[1:]))
