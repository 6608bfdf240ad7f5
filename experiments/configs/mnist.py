"""simple_cnn on MNIST (tfds, or the shared-data copy with --config.data_dir=../shared/data/mnist)."""

from jaxcnn.train.config import get_config as base_config


def get_config():
  config = base_config()
  config.dataset = "mnist"
  config.val_size = 5000
  config.num_epochs = 10
  config.batch_size = 128
  config.optimizer.learning_rate = 0.1
  config.checkpoint_every_steps = 1000
  config.log_every_steps = 100
  return config
