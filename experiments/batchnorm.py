"""Batch normalization: a 50-layer ReLU MLP at init, and training with and without BN.

  python experiments/batchnorm.py [--quick] [--config experiments/configs/batchnorm.py[:quick]]
                                  [--config.key=value ...] [--workdir DIR]

--quick (or the config argument ``:quick``) is the CI-sized setting of the config file;
--config.key=value overrides are applied after it.

Writes batchnorm.md (constancy metrics at init, the training table), results.json,
histograms.png, constancy.png, predictions.png, training_accuracy.png and training_loss.png to
runs/batchnorm/ (runs/batchnorm_quick/ with --quick).
"""

import os
import sys

from jaxcnn.studies import common

if __name__ == "__main__":
  sys.exit(common.study_main(
      "jaxcnn.studies.batchnorm",
      os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "batchnorm.py"),
      sys.argv[1:]))
