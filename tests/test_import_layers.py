"""The library's layers (docs/architecture.md): an import only points down, and nothing in the
library below them imports the studies, the search module (the studies may) or experiments/."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jaxcnn"
# Lower number = lower layer. A module may import its own layer or a lower one.
LAYERS = {
    "registry": 0,
    "nn": 1, "data": 1,
    "models": 2, "diagnostics": 2,
    "train": 3,
    "search": 4,
    "studies": 5,
    "cli": 6, "__main__": 6, "__init__": 6,
}


def _layer(module: str) -> str:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: pathlib.Path) -> list[str]:
  tree = ast.parse(path.read_text())
  names = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names += [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names.append(node.module)
  return names


def _modules():
  for path in sorted(PACKAGE.rglob("*.py")):
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    yield ".".join(rel.parts), path


def test_every_package_has_a_layer():
  for module, _ in _modules():
    assert _layer(module).removesuffix(".py") in LAYERS, module


@pytest.mark.parametrize("module,path", list(_modules()), ids=lambda v: str(v))
def test_imports_point_down(module, path):
  own = LAYERS[_layer(module)]
  for name in _imports(path):
    assert not name.startswith("experiments"), f"{module} imports {name}"
    if not name.startswith("jaxcnn.") or _layer(module) == "__init__":
      continue
    target = _layer(name)
    assert LAYERS[target] <= own, f"{module} (layer {own}) imports {name} (layer {LAYERS[target]})"
    if target == "studies" or (target == "search" and _layer(module) != "studies"):
      assert _layer(module) in (target, "cli", "__main__"), f"{module} imports {name}"
