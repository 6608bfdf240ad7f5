"""``jaxcnn train``: train a model from an ml_collections config.

  jaxcnn train                                         # digits, simple_cnn, a minute on a CPU
  jaxcnn train --config experiments/configs/cifar10.py --config.data_dir=../shared/data/cifar10
  jaxcnn train --config.optimizer.name=adamw --config.num_models=5 --workdir runs/adamw
  jaxcnn train --config.sweep.learning_rate="(0.02, 0.05, 0.1)"   # 3 models in one vmapped run
  jaxcnn train --config experiments/configs/imagenette.py --config.data_dir=~/tensorflow_datasets
  jaxcnn train --workdir runs/adamw --resume           # continue from the last checkpoint

``--workdir`` defaults to a fresh ``runs/YYYYmmdd-HHMMSS-<config>`` folder.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from absl import flags
from ml_collections import config_flags

import jaxcnn

DEFAULT_CONFIG = Path(jaxcnn.__file__).resolve().parents[1] / "experiments" / "configs" / "default.py"


def _flags(argv: list[str]) -> flags.FlagValues:
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file(
      "config", str(DEFAULT_CONFIG), "Config file (a .py with get_config()); its fields can be "
      "overridden with --config.key=value.", flag_values=fv, lock_config=True, sys_argv=["jaxcnn train", *argv])
  flags.DEFINE_string("workdir", None, "Run folder (default: a fresh runs/<time>-<config>).",
                      flag_values=fv)
  flags.DEFINE_bool("resume", False, "Continue from the latest checkpoint in --workdir.",
                    flag_values=fv)
  return fv


def main(argv: list[str]) -> int:
  """Entry point of ``jaxcnn train``; returns the exit status."""
  if any(a in ("-h", "--help", "--helpfull") for a in argv):
    print(__doc__)
    print("flags:\n  --config: config file (default experiments/configs/default.py); override fields "
          "with --config.key=value\n  --workdir: run folder\n  --resume: continue from the "
          "latest checkpoint in --workdir")
    return 0
  try:
    fv = _flags(argv)
    fv(["jaxcnn train", *argv])
    config = fv.config
  except (flags.Error, FileNotFoundError, OSError, AttributeError, KeyError, TypeError,
          ValueError) as e:
    message = str(e)
    if not any(a.startswith("--config=") or a == "--config" for a in argv) and \
        not DEFAULT_CONFIG.exists():
      message = (f"The default config {DEFAULT_CONFIG} is not there (jaxcnn was installed without "
                 f"the repository's experiments/ folder): pass --config path/to/config.py.")
    print(f"jaxcnn train: {message}", file=sys.stderr)
    return 2
  if fv.resume and not fv.workdir:
    print("jaxcnn train: --resume needs --workdir (the run folder to continue).", file=sys.stderr)
    return 2
  workdir = fv.workdir
  if workdir is None:
    config_name = Path(config_flags.get_config_filename(fv["config"]).split(":")[0]).stem
    workdir = Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{config_name}"

  from jaxcnn.train import checkpoint, loop

  try:
    loop.fit(config, workdir, resume=fv.resume)
  except (loop.NonFiniteLossError, checkpoint.CheckpointError, ValueError) as e:
    print(f"jaxcnn train: {e}", file=sys.stderr)
    return 1
  return 0
