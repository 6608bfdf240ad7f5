"""Config of the backpropagation study (experiments/backprop.py, jaxcnn.studies.backprop).

Quick setting (``--quick``, i.e. ``get_config("quick")``): smaller figures (the study itself is
already tiny).
"""

import ml_collections

from jaxcnn.train.config import config_args


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_args(arg, quick=False)
  config = ml_collections.ConfigDict()
  config.quick = arg.quick  # records the setting (run folder NAME_quick); set it through arg
  # Examples from jaxcnn.studies.backprop.EXAMPLES, each a table and a drawn graph.
  config.examples = ("add_mul", "sigmoid_circuit", "sigmoid_gate", "gates", "branch")
  config.gate_inputs = (3.0, -4.0, 2.0)  # (a, b, upstream) for the add/max/mul gate table
  config.mlp = ml_collections.ConfigDict()
  config.mlp.sizes = (4, 8, 3)  # the 2-layer MLP whose jaxpr is drawn
  config.mlp.batch = 2
  config.mlp.act = "tanh"  # or "relu" (max)
  config.dpi = 120
  if arg.quick:
    config.dpi = 60
  return config
