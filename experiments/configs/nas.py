"""Config of the NAS-strategies study (experiments/nas.py, jaxcnn.studies.nas).

Full setting: random search, regularized evolution and REINFORCE on the shipped digits table
of the 256 cells of ``nasbench201.SMALL``, 200 searches each at budgets up to 100 evaluations
(seconds); then ENAS, one-shot random search and DARTS (first and second order) with shared
weights on the table's own train/val split, 3 seeds each, 300 weight steps each (most of the
run's time). Quick setting (CI; ``--quick``): part 1 only, with fewer searches and budgets.
"""

import ml_collections

from jaxcnn.train.config import config_args


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_args(arg, quick=False)
  config = ml_collections.ConfigDict()
  config.quick = arg.quick  # records the setting (run folder NAME_quick); set it through arg
  config.dpi = 100
  config.seed = 0  # first seed of the searches (part 1) and of the weight-sharing runs (part 2)
  config.table = "digits"  # jaxcnn.search.tabular.load(table)
  config.top_fraction = 0.01  # a "top" cell: among the best ceil(1% of 256) = 3
  # Part 1: (label, jaxcnn.search.strategies spec), simulated on the table.
  # REA's population 10 and tournament 3 fit a space of 256 cells and budgets of 10..100.
  config.strategies = (
      ("random", "random"),
      ("evolution", "evolution(population_size=10, sample_size=3)"),
      ("reinforce", "reinforce(learning_rate=0.1)"),
  )
  config.budgets = (5, 10, 20, 30, 50, 75, 100)
  config.num_seeds = 200
  # Part 2: weight-sharing methods (jaxcnn.studies.nas.WS_METHODS), trained on the table's split.
  config.ws_methods = ("enas", "random_ws", "darts_v1", "darts_v2")
  config.ws_seeds = 3
  config.ws_steps = 300  # weight steps of every method (ENAS: also cells asked); a cell of the
  #                       table trains 60 steps of the same batch size
  config.ws_batch_size = 32
  config.ws_learning_rate = 0.05  # SGD (Nesterov 0.9) of ENAS's and random's shared weights
  config.enas_train_steps = 10  # weight steps (= cells asked) per controller update
  config.enas_learning_rate = 0.01  # Adam of the controller (the paper's 3.5e-4 barely moves
  #                                   in 30 updates)
  config.final_samples = 100  # cells scored with the shared weights to derive the result
  config.darts_xi = 0.025  # darts_v2's unrolling step (the paper: the weights' learning rate)
  config.num_cells = 1  # the macro network of the table (tabular.Recipe)
  config.channels = 8
  config.num_classes = 10
  config.eval_batch_size = 500
  if arg.quick:
    config.dpi = 50
    config.budgets = (5, 10, 25)
    config.num_seeds = 50
    # No weight-sharing part: compiling the supernet's steps alone takes ~30 s of CPU (its test,
    # tests/studies/test_nas.py, is -m slow); set e.g. ws_methods=("enas",), ws_steps=20.
    config.ws_methods = ()
    config.ws_seeds = 1
    config.ws_steps = 20
    config.enas_train_steps = 5
    config.final_samples = 10
  return config
