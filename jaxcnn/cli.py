"""The ``jaxcnn`` console script: ``jaxcnn COMMAND [ARGS]``.

Each command lives in its own module and is imported only when run, so ``jaxcnn models`` does not
pay for TensorFlow and the engine runs where tensorflow-datasets is not installed. Every command
runs with JAX's persistent compilation cache on (:mod:`jaxcnn.train.cache`).
"""

from __future__ import annotations

import importlib
import sys

# command -> ("module:function", one-line help). Each function takes argv (list[str]) -> int.
COMMANDS = {
    "train": ("jaxcnn.train.cli:main", "train a model from an ml_collections config"),
    "search": ("jaxcnn.search.cli:main", "architecture search from an ml_collections config"),
    "search-table": ("jaxcnn.search.tabular:main",
                     "train every cell of nasbench201.SMALL into a tabular benchmark (resumable)"),
    "init-study": ("jaxcnn.studies.init_study:main", "activation statistics under four inits"),
    "models": ("jaxcnn.models.cli:list_main", "list registered models"),
    "summary": ("jaxcnn.models.cli:summary_main", "per-layer table of a model"),
}


def _usage() -> str:
  width = max(map(len, COMMANDS))
  lines = ["usage: jaxcnn COMMAND [ARGS]", "", "commands:"]
  lines += [f"  {name:<{width}}  {doc}" for name, (_, doc) in COMMANDS.items()]
  lines += ["", "Run 'jaxcnn COMMAND --help' for a command's options."]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  if not argv or argv[0] in ("-h", "--help"):
    print(_usage())
    return 0
  command, rest = argv[0], argv[1:]
  if command not in COMMANDS:
    print(f"jaxcnn: unknown command {command!r}.\n\n{_usage()}", file=sys.stderr)
    return 2
  module_name, func_name = COMMANDS[command][0].split(":")
  from jaxcnn.train.cache import enable_compilation_cache  # pylint: disable=g-import-not-at-top
  enable_compilation_cache()
  return int(getattr(importlib.import_module(module_name), func_name)(rest) or 0)


if __name__ == "__main__":
  sys.exit(main())
