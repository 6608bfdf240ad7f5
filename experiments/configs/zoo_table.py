"""Config of the model-zoo table (experiments/zoo_table.py, jaxcnn.studies.zoo).

Full run: parameters and multiply-adds of every registered model (nothing compiled: shapes and
costs come from jax.eval_shape), plus the train-step throughput of the models of at most
``throughput_max_macs`` multiply-adds per image on the present device (0: no cap; set it to 0 on
a GPU). Quick run (``--quick``, i.e. ``get_config("quick")``): a handful of small models,
throughput for one.
"""

import ml_collections

from jaxcnn.train.config import config_args


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_args(arg, quick=False)
  config = ml_collections.ConfigDict()
  config.quick = arg.quick  # records the setting (run folder NAME_quick); set it through arg
  config.names = ()  # registered model names; () = every registered model
  config.throughput = True  # train-step images/s on jax.devices()[0]
  config.throughput_names = ()  # time only these models; () = those under throughput_max_macs
  config.batch_size = 8  # small: CPU; use e.g. 128 on a GPU
  config.throughput_max_macs = 1e8  # time only models of <= 0.1 G multiply-adds (CPU); 0 = all
  config.throughput_seconds = 3.0  # timed seconds per model, after compiling its step
  config.plot_exclude_families = ("simple",)  # in the table, not the plot (not classic nets)
  config.dpi = 100
  if arg.quick:
    config.names = ("simple_cnn_small", "resnet20", "densenet_bc_100_12", "mobilenet_v1_025",
                    "alexnet")
    config.throughput_names = ("simple_cnn_small",)
  return config
