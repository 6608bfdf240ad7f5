"""The model zoo: ``create_model(name, **overrides)``, ``list_models(pattern)``.

Each family module registers its variants when imported here.
"""

from jaxcnn.models._common import (MODELS, ModelInfo, Published, create_model, list_models,
                                   model_info, register_model)
from jaxcnn.models import (  # noqa: F401  (imported to register their variants)
    alexnet,
    densenet,
    efficientnet,
    googlenet,
    mlp,
    mobilenet,
    nasnet,
    resnet,
    simple,
    small_cnns,
    speedrun,
    vgg,
)
from jaxcnn.models.analysis import count_params, flops, memory, summary  # noqa: E402,F401
from jaxcnn.models import pretrained  # noqa: E402,F401  (torchvision/timm weights)
