"""ResNet-20 on CIFAR-10 with the recipe of He et al. 2016, section 4.2.

SGD with momentum 0.9, weight decay 1e-4, batch 128, learning rate 0.1 divided by 10 at 32k and
48k iterations and stopped at 64k, on a 45k/5k train/validation split; 4-pixel padding with random
crops and horizontal flips; per-pixel mean subtracted. With 351 steps per epoch that is epochs 91
and 137 of 182. The paper reports 8.75% test error for ResNet-20. References: He et al. 2016,
"Deep Residual Learning for Image Recognition".

  jaxcnn train --config experiments/configs/cifar10.py                      # tfds download
  jaxcnn train --config experiments/configs/cifar10.py --config.data_dir=../shared/data/cifar10
"""

from jaxcnn.train.config import get_config as base_config


def get_config():
  config = base_config()
  config.dataset = "cifar10"
  config.val_size = 5000
  config.preprocessing = "mean_image"
  config.augment = ("crop(padding=4)", "flip")
  config.model.name = "resnet20"
  config.num_epochs = 182
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = False
  config.optimizer.weight_decay = 1e-4
  config.schedule.name = "step"
  config.schedule.warmup_epochs = 0.0
  config.schedule.decay_epochs = (91, 137)
  config.schedule.decay_factor = 0.1
  config.log_every_steps = 100
  config.checkpoint_every_steps = 3510  # every 10 epochs
  return config
