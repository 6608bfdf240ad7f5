"""The default run of ``jaxcnn train``: simple_cnn on the offline digits, a minute on two CPU cores.

``jaxcnn train`` without ``--config`` loads the library's own jaxcnn/train/config.py; this file
re-exports it as the starting point to copy.

  jaxcnn train                                     # this config
  jaxcnn train --config experiments/configs/default.py --config.model.act=elu --config.num_models=5
"""

from jaxcnn.train.config import get_config  # noqa: F401
