"""jaxcnn: a JAX functional research framework for training convolutional networks."""

__version__ = "0.1.0"
