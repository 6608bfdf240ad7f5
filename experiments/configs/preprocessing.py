"""Config of the data-preprocessing study (experiments/preprocessing.py, jaxcnn.studies.preprocessing).

Full setting: MNIST from ../shared/data, 10,000 training / 2,000 test images, a linear softmax
classifier and a 784-64-10 MLP, 7 learning rates each, 1,000 SGD steps of batch 128 (a few
minutes on a 2-core CPU). Quick setting (CI; ``--quick``, i.e. ``get_config("quick")``): the
offline digits, a 32-unit MLP, 150 steps.
"""

import os

import ml_collections

from jaxcnn.train.config import config_args


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_args(arg, quick=False)
  c = ml_collections.ConfigDict()
  c.quick = arg.quick  # records the setting (run folder NAME_quick); set it through arg
  c.seed = 0
  c.dpi = 110

  # (b) The zig-zag of a 2-D linear neuron on all-positive inputs vs the same inputs centered.
  c.zigzag = ml_collections.ConfigDict(dict(
      seed=0, num_examples=200, low=0.0, high=1.0,  # inputs U(low, high)^2
      w_star=(1.0, -1.0), w0=(0.0, 0.0), tol=0.01,  # converged: ||w - w*|| <= tol ||w*||
      lr_min=0.05, lr_max=30.0, num_lrs=25, num_steps=2000, num_seeds=5,
      plot_steps=60))  # the figure shows the first plot_steps steps at the best learning rate

  # The lecture's figure: a correlated 2-D Gaussian cloud after each transform.
  c.cloud = ml_collections.ConfigDict(dict(
      mean=(3.0, 2.0), cov=((1.0, 0.8), (0.8, 0.9)), num_points=500,
      specs=("none", "mean_image", "standardize", "pca(k=2)", "pca(k=2, whiten=True)",
             "zca(epsilon=1e-05)")))

  # Data for (a) and (c): pixels / 255 (all positive), random subsets.
  c.dataset = "mnist"
  # ../shared/data beside the repository (this file is experiments/configs/ in it).
  c.data_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                            "shared", "data")
  c.data_seed = 0
  c.train_size = 10_000
  c.test_size = 2_000
  c.eval_size = 1_000     # fixed training subset on which the training loss is measured
  c.transforms = ("none", "mean_image", "channel_mean", "standardize", "pca(k=100)",
                  "pca(k=100, whiten=True)", "zca(epsilon=0.01)")
  c.figure_transforms = ("mean_image", "standardize", "zca(epsilon=0.01)")
  c.figure_pca = "pca(k=50)"  # reconstruction from the top k components, and the components
  c.num_show = 8

  # Models (hidden widths; () is softmax regression) and SGD.
  c.models = ml_collections.ConfigDict({"linear": (), "mlp": (64,)})
  c.act = "relu"
  c.lrs = ml_collections.ConfigDict({
      "linear": (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
      "mlp": (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)})
  c.targets = ml_collections.ConfigDict({"linear": 0.25, "mlp": 0.05})  # training-loss targets
  c.momentum = 0.0
  c.batch_size = 128
  c.num_steps = 1000
  c.eval_every = 25

  # (a) Sensitivity.
  c.hessian_size = 1_000
  c.power_iters = 30
  c.eps = 0.01  # per-weight RMS of the random perturbations
  c.sensitivity_samples = 16

  if arg.quick:  # CI-sized: the offline digits, a 32-unit MLP, 150 steps
    c.dataset = "digits"
    c.data_dir = ""
    c.train_size = 1_618
    c.test_size = 179
    c.transforms = ("none", "mean_image", "pca(whiten=True)", "zca(epsilon=0.01)")
    c.figure_pca = "pca(k=10)"
    c.num_show = 6
    c.models = ml_collections.ConfigDict({"linear": (), "mlp": (32,)})
    c.lrs = ml_collections.ConfigDict({"linear": (0.03, 0.3, 3.0), "mlp": (0.03, 0.3, 3.0)})
    c.targets = ml_collections.ConfigDict({"linear": 0.5, "mlp": 0.5})
    c.eval_size = 179
    c.num_steps = 150
    c.eval_every = 50
    c.hessian_size = 200
    c.power_iters = 10
    c.sensitivity_samples = 4
    c.dpi = 60
    c.zigzag.num_lrs = 8
    c.zigzag.num_steps = 200
    c.zigzag.num_seeds = 3
  return c
