"""Config of the backpropagation study (experiments/backprop.py, jaxcnn.studies.backprop)."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.quick = False  # CI-sized run: smaller figures (the study itself is already tiny)
  # Examples from jaxcnn.studies.backprop.EXAMPLES, each a table and a drawn graph.
  config.examples = ("add_mul", "sigmoid_circuit", "sigmoid_gate", "gates", "branch")
  config.gate_inputs = (3.0, -4.0, 2.0)  # (a, b, upstream) for the add/max/mul gate table
  config.mlp = ml_collections.ConfigDict()
  config.mlp.sizes = (4, 8, 3)  # the 2-layer MLP whose jaxpr is drawn
  config.mlp.batch = 2
  config.mlp.act = "tanh"  # or "relu" (max)
  config.dpi = 120
  config.dpi_quick = 60
  return config
