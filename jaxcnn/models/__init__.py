"""The model zoo: ``create_model(name, **overrides)``, ``list_models(pattern)``.

Each family module registers its variants when imported here.
"""

from jaxcnn.models._common import MODELS, create_model, list_models, register_model
from jaxcnn.models import (  # noqa: F401  (imported to register their variants)
    alexnet,
    densenet,
    efficientnet,
    googlenet,
    mobilenet,
    nasnet,
    resnet,
    simple,
    vgg,
)
from jaxcnn.models.analysis import count_params, flops, summary  # noqa: E402,F401
