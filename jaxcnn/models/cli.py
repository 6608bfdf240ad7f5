"""``jaxcnn models [PATTERN]`` and ``jaxcnn summary NAME``: the model zoo from the command line."""

from __future__ import annotations

import argparse
import sys


def list_main(argv: list[str]) -> int:
  """Prints the registered models matching a shell-style pattern, one per line."""
  parser = argparse.ArgumentParser(prog="jaxcnn models", description="List registered models.")
  parser.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'res*'")
  args = parser.parse_args(argv)
  from jaxcnn.models import list_models

  names = list_models(args.pattern)
  if not names:
    print(f"jaxcnn models: no model matches {args.pattern!r}.", file=sys.stderr)
    return 1
  print("\n".join(names))
  return 0


def summary_main(argv: list[str]) -> int:
  """Prints a model's per-layer table with its parameters and multiply-accumulates per image,
  and torchinfo's memory estimate at ``--batch-size``.

  The input defaults to the model's registered input size (``model_info(name).input_size``).
  """
  parser = argparse.ArgumentParser(prog="jaxcnn summary",
                                   description="Per-layer table of a registered model.")
  parser.add_argument("name", help="registered model name, e.g. resnet50")
  parser.add_argument("--input-size", type=int, default=None,
                      help="image height and width (default: the model's registered size)")
  parser.add_argument("--channels", type=int, default=None,
                      help="input channels (default: the model's registered channels)")
  parser.add_argument("--num-classes", type=int, default=None, help="override the model's classes")
  parser.add_argument("--depth", type=int, default=1, help="module nesting depth of the rows")
  parser.add_argument("--batch-size", type=int, default=1,
                      help="batch size of the memory estimate (default 1)")
  args = parser.parse_args(argv)
  from jaxcnn.models import create_model, model_info, summary

  overrides = {} if args.num_classes is None else {"num_classes": args.num_classes}
  try:
    height, width, channels = model_info(args.name).input_size
    if args.input_size is not None:
      height = width = args.input_size
    channels = channels if args.channels is None else args.channels
    if args.batch_size < 1:
      raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}.")
    model = create_model(args.name, **overrides)
    print(summary(model, (args.batch_size, height, width, channels), depth=args.depth))
  except ValueError as e:
    print(f"jaxcnn summary: {e}", file=sys.stderr)
    return 2
  return 0
