"""Config of the model-zoo table (experiments/zoo_table.py, jaxcnn.studies.zoo).

Full run: parameters and multiply-adds of every registered model (nothing compiled: shapes and
costs come from jax.eval_shape), plus the train-step throughput of the models of at most
``throughput_max_macs`` multiply-adds per image on the present device (0: no cap; set it to 0 on
a GPU). Quick run: a handful of small models, throughput for one.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.quick = False  # CI-sized run: names_quick only, throughput of throughput_names_quick
  config.names = ()  # registered model names; () = every registered model
  config.names_quick = ("simple_cnn_small", "resnet20", "densenet_bc_100_12", "mobilenet_v1_025",
                        "alexnet")
  config.throughput = True  # train-step images/s on jax.devices()[0]
  config.throughput_names_quick = ("simple_cnn_small",)
  config.batch_size = 8  # small: CPU; use e.g. 128 on a GPU
  config.throughput_max_macs = 1e8  # time only models of <= 0.1 G multiply-adds (CPU); 0 = all
  config.throughput_seconds = 3.0  # timed seconds per model, after compiling its step
  config.plot_exclude_families = ("simple",)  # in the table, not the plot (not classic nets)
  config.dpi = 100
  return config
