"""Imports every model family so that its `@register_model` builders enter the registry."""

from cnnkit.models import (  # noqa: F401
    alexnet,
    compact,
    convnext,
    densenet,
    efficientnet,
    efficientnet_v2,
    googlenet,
    inception_v3,
    lenet,
    mobilenet_v1,
    mobilenet_v2,
    mobilenet_v3,
    regnet,
    resnet,
    resnet_timm,
    resnet_v2,
    shufflenet,
    squeezenet,
    vgg,
    xception,
)
