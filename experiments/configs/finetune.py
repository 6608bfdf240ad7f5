"""Fine-tuning torchvision (or timm) ImageNet weights on your own data.

Download the weights where you have internet, e.g. torchvision's ResNet-18 as ``.pth``, and turn
them into ``.safetensors`` (no pickle) with torch installed::

  python -c "import torch, safetensors.torch as st; st.save_file(torch.load('resnet18-f37072fd.pth', weights_only=True), 'resnet18.safetensors')"

Then, with CIFAR-10 (or your own ``{split}.npz`` folder) as the data::

  jaxcnn train --config experiments/configs/finetune.py --config.init_from.weights=resnet18.safetensors --config.data_dir=../shared/data/cifar10
  jaxcnn train --config experiments/configs/finetune.py:head ...   # only the new head trains

The classifier is replaced by a fresh one for the data's classes (drawn from ``config.seed``);
the rest starts from the weights (:mod:`jaxcnn.models.pretrained`), converted once. The inputs
are normalized with ImageNet's mean and std, as the weights expect. CIFAR's 32x32 images go in
as they are (the networks pool globally); at the weights' 224x224 they transfer better, at about
49x the compute. ``:head`` freezes the backbone (its parameters get no
updates and no weight decay; batch-norm statistics still adapt in training mode) and trains the
head at a 10x higher rate. References: Yosinski et al. 2014, "How transferable are features in
deep neural networks?"; Kornblith et al. 2019, "Do better ImageNet models transfer better?".
"""

from jaxcnn.train.config import config_args
from jaxcnn.train.config import get_config as base_config


def get_config(arg=None):
  arg = config_args(arg, head=False)
  config = base_config()
  config.dataset = "cifar10"
  config.val_size = 5000
  config.preprocessing = "normalize"  # ImageNet's mean/std, what torchvision's weights expect
  config.augment = ("crop(padding=4)", "flip")
  config.model = config.model.__class__({"name": "resnet18"})  # the weights fix act/norm/init
  config.init_from.weights = ""  # set on the command line: --config.init_from.weights=FILE
  config.init_from.source = "torchvision"
  config.init_from.train = "head" if arg.head else "all"
  config.num_epochs = 5
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.1 if arg.head else 0.01
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 1e-4
  config.schedule.name = "cosine"
  config.schedule.warmup_epochs = 0.5
  config.log_every_steps = 50
  return config
