"""``jaxcnn train``: train a model from an ml_collections config.

  jaxcnn train                                         # digits, simple_cnn, a minute on a CPU
  jaxcnn train --config experiments/configs/cifar10.py --config.data_dir=../shared/data/cifar10
  jaxcnn train --config.optimizer.name=adamw --config.num_models=5 --workdir runs/adamw
  jaxcnn train --config.sweep.learning_rate="(0.02, 0.05, 0.1)"   # 3 models in one compiled run
  jaxcnn train --config experiments/configs/imagenette.py --config.data_dir=~/tensorflow_datasets
  jaxcnn train --workdir runs/adamw --resume           # continue from the last checkpoint

``--workdir`` defaults to a fresh ``runs/YYYYmmdd-HHMMSS-<config>`` folder.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

from absl import flags
from ml_collections import config_flags

# The library's own base config (experiments/configs/default.py re-exports it for users).
DEFAULT_CONFIG = Path(__file__).resolve().with_name("config.py")


def config_error(error: Exception, argv: list[str], name: str = "config") -> str:
  """One line saying what is wrong in ``argv``'s ``--config`` flags, for an error of their parse.

  ml_collections reports an unknown override key as a bare ``KeyError('x')`` and an error inside
  ``get_config`` as a whole traceback; this names the key (``--config.model.x``) or keeps the
  traceback's first and last lines.
  """
  if isinstance(error, SyntaxError):
    return (f"syntax error in the config file {error.filename}, line {error.lineno}: "
            f"{error.msg}")
  while isinstance(error, (AttributeError, KeyError)) and error.args and \
      isinstance(error.args[0], Exception):
    error = error.args[0]  # ConfigDict wraps its KeyError in an AttributeError
  text = str(error.args[0] if error.args else error).strip()
  if isinstance(error, (AttributeError, KeyError)):
    leaf, _, hint = text.partition("\n")
    leaf = leaf.strip("'\"")
    keys = [a.split("=", 1)[0].split(".", 1)[1] for a in argv
            if a.startswith((f"--{name}.", f"-{name}.", f"--no{name}."))]
    key = next((k for k in reversed(keys) if leaf in k.split(".")), None)
    if key is not None:
      hint = " ".join(hint.split())
      return (f"unknown config field {key!r} (--{name}.{key}): the config has no such field"
              + (f"; {hint}" if hint else ""))
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  if isinstance(error, OSError) and lines:
    return f"cannot load the config file: {lines[-1]}"
  if len(lines) > 1:
    head = lines[0].removesuffix(":").replace(": Error whilst parsing config file", "")
    return f"{head}: {lines[-1]}"
  return text or type(error).__name__


def _flags(argv: list[str]) -> flags.FlagValues:
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file(
      "config", str(DEFAULT_CONFIG), "Config file (a .py with get_config()); its fields can be "
      "overridden with --config.key=value.", flag_values=fv, lock_config=True,
      sys_argv=["jaxcnn train", *argv])
  flags.DEFINE_string("workdir", None, "Run folder (default: a fresh runs/<time>-<config>).",
                      flag_values=fv)
  flags.DEFINE_bool("resume", False, "Continue from the latest checkpoint in --workdir.",
                    flag_values=fv)
  return fv


def main(argv: list[str]) -> int:
  """Entry point of ``jaxcnn train``; returns the exit status."""
  if any(a in ("-h", "--help", "--helpfull") for a in argv):
    print(__doc__)
    print("flags:\n  --config: config file (default jaxcnn/train/config.py); override fields "
          "with --config.key=value\n  --workdir: run folder\n  --resume: continue from the "
          "latest checkpoint in --workdir\n")
    print(config_fields())
    return 0
  try:
    fv = _flags(argv)
    fv(["jaxcnn train", *argv])
    config = fv.config
    config.keys()  # a config file that failed to load raises its OSError here
  except (flags.Error, OSError, AttributeError, KeyError, TypeError, ValueError,
          SyntaxError) as e:
    print(f"jaxcnn train: {config_error(e, argv)}", file=sys.stderr)
    return 2
  if fv.resume and not fv.workdir:
    print("jaxcnn train: --resume needs --workdir (the run folder to continue).", file=sys.stderr)
    return 2
  workdir = fv.workdir
  if workdir is None:
    config_path = Path(config_flags.get_config_filename(fv["config"]).split(":")[0])
    config_name = "default" if config_path.resolve() == DEFAULT_CONFIG else config_path.stem
    workdir = Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{config_name}"

  try:
    from jaxcnn.train import checkpoint, loop  # pylint: disable=g-import-not-at-top
    result = loop.fit(config, workdir, resume=fv.resume)
  except KeyboardInterrupt:
    print("\njaxcnn train: interrupted before the first step finished; nothing was saved.",
          file=sys.stderr)
    return 130
  except (loop.NonFiniteLossError, checkpoint.CheckpointError, ValueError, OSError) as e:
    print(f"jaxcnn train: {e}", file=sys.stderr)
    return 1
  return 130 if result.get("interrupted") and not config.stop_after_steps else 0


def config_fields(config: Any = None, prefix: str = "") -> str:
  """``--config.<field>=<default>`` lines for every field of the default config (for --help)."""
  if config is None:
    from jaxcnn.train.config import get_config  # pylint: disable=g-import-not-at-top
    return "config fields (defaults; each a --config.<field>=<value> override):\n" + \
        config_fields(get_config())
  comments = _field_comments()
  lines = []
  for key, value in config.items():
    if hasattr(value, "items"):
      lines.append(config_fields(value, f"{prefix}{key}."))
    else:
      flag = f"  --config.{prefix}{key}={value!r}"
      comment = comments.get(f"{prefix}{key}")
      lines.append(f"{flag:<48} {comment}" if comment else flag)
  return "\n".join(lines)


def _field_comments() -> dict[str, str]:
  """``{field: its end-of-line comment}`` from the default config's source (``c.x = 1  # ...``
  and ``"x": 1,  # ...`` lines)."""
  comments, block = {}, ""
  for line in DEFAULT_CONFIG.read_text().splitlines():
    top = re.match(r"\s*c\.(\w+)\s*=", line)
    if top:
      block = top.group(1) + "." if "ConfigDict(" in line else ""
    match = re.match(r'\s*(?:c\.(\w+)\s*=|"(\w+)":).*?#\s*(.+)$', line)
    if match:
      key = match.group(1) or f"{block}{match.group(2)}"
      comments[key] = match.group(3).strip()
  return comments
