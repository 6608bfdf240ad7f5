"""ResNet-50 on Imagenette (10 ImageNet classes, 9,469 / 3,925 images), streamed, for a GPU.

Imagenette is too large to hold in memory, so it streams through Grain from tfds's ArrayRecord
files (JPEG decoding, random-resized 224x224 crops and flips for training, center crops for
validation) with prefetch to the device; the per-channel standardization is fitted on the first 5,000 training images
(center crops), not on the whole split; the reported accuracy is on the validation split.
Recipe: SGD with Nesterov momentum 0.9, batch 256 with learning rate 0.1 and a 5-epoch linear
warmup (Goyal et al. 2017), cosine decay (Loshchilov & Hutter 2017), weight decay 1e-4 on
kernels, label smoothing 0.1 (Szegedy et al. 2016), bfloat16 compute. References: He et al. 2016,
"Deep Residual Learning for Image Recognition"; https://github.com/fastai/imagenette.

On a machine with internet (tfds downloads and prepares Imagenette, about 1.5 GB, on first use;
its builder needs TensorFlow for that once: pip install -e ".[tf]"):

  jaxcnn train --config experiments/configs/imagenette.py --workdir runs/imagenette
  jaxcnn train --config experiments/configs/imagenette.py --config.model.name=resnet18 \
      --config.image_size=160                                  # faster, smaller
  jaxcnn train --config experiments/configs/imagenette.py --config.data_dir=DIR   # prepared copy
"""

from jaxcnn.train.config import get_config as base_config


def get_config():
  config = base_config()
  config.dataset = "imagenette"
  config.image_size = 224
  config.preprocessing = "standardize"
  config.preprocessing_examples = 5000
  config.model.name = "resnet50"
  config.num_epochs = 40
  config.batch_size = 256
  config.eval_batch_size = 500
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 1e-4
  config.schedule.name = "cosine"
  config.schedule.warmup_epochs = 5.0
  config.label_smoothing = 0.1
  config.dtype = "bfloat16"
  config.log_every_steps = 20
  config.checkpoint_every_steps = 360  # about every 10 epochs (36 steps per epoch)
  return config
