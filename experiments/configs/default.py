"""The default run of ``jaxcnn train``: simple_cnn on the offline digits, a minute on two CPU cores.

  jaxcnn train                                     # this config
  jaxcnn train --config.model.act=elu --config.num_models=5
"""

from jaxcnn.train.config import get_config as base_config


def get_config():
  return base_config()
