"""One small registry for every named choice: models, activations, initializers, datasets.

A *spec* is a registered name (``"elu"``), a name with literal arguments
(``"elu(alpha=0.5)"``, ``"kaiming_normal(nonlinearity='relu')"``) or a callable, which is
returned unchanged. Unknown names raise a ``ValueError`` that lists the known ones.
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import functools
import inspect
import re
from typing import Any, Callable, Iterator, Mapping


def parse_spec(spec: str) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
  """Splits ``"name(1, a=2)"`` into ``("name", (1,), {"a": 2})``; arguments must be literals."""
  try:
    node = ast.parse(spec.strip(), mode="eval").body
  except SyntaxError as e:
    raise ValueError(f"Cannot parse spec {spec!r}: {e.msg}") from None
  if isinstance(node, ast.Name):
    return node.id, (), {}
  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
    try:
      args = tuple(ast.literal_eval(a) for a in node.args)
      kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    except ValueError:
      raise ValueError(f"Arguments of spec {spec!r} must be Python literals.") from None
    if None in kwargs:
      raise ValueError(f"Spec {spec!r} may not use **kwargs.")
    return node.func.id, args, kwargs
  raise ValueError(f"Spec {spec!r} is not of the form 'name' or 'name(arg=value, ...)'.")


class Registry:
  """Maps names to callables.

  Args:
    kind: what is registered, used in error messages ("activation", "model", ...).
    factory: if True, entries are factories and ``get`` *calls* them with the spec's arguments
      (initializers, models); if False, ``get`` returns the entry itself, or a
      ``functools.partial`` of it when the spec has arguments (activation functions).
  """

  def __init__(self, kind: str, *, factory: bool):
    self.kind = kind
    self.factory = factory
    self._entries: dict[str, Callable[..., Any]] = {}
    self._metadata: dict[str, dict[str, Any]] = {}

  def register(self, obj: Callable[..., Any] | None = None, *, name: str | None = None,
               metadata: Mapping[str, Any] | None = None):
    """Registers ``obj`` under ``name`` (default ``obj.__name__``); usable as a decorator.

    ``metadata`` (any mapping: a model's family, input size, published figures...) is kept
    beside the entry and read back with :meth:`metadata`.
    """

    def add(o):
      key = name or getattr(o, "__name__", None)
      if not key:
        raise ValueError(f"A {self.kind} without __name__ needs an explicit name.")
      if key in self._entries and self._entries[key] is not o:
        raise ValueError(f"{self.kind} {key!r} is already registered.")
      self._entries[key] = o
      self._metadata[key] = dict(metadata or {})
      return o

    return add if obj is None else add(obj)

  def lookup(self, name: str) -> Callable[..., Any]:
    """The registered entry itself; ValueError listing the known names if unknown."""
    try:
      return self._entries[name]
    except KeyError:
      close = difflib.get_close_matches(name, self._entries, n=3)
      hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
      raise ValueError(
          f"Unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(self.names())}."
      ) from None

  def metadata(self, name: str) -> dict[str, Any]:
    """A copy of the metadata registered with ``name`` (``{}`` if none); ValueError if unknown."""
    self.lookup(name)
    return dict(self._metadata.get(name, {}))

  def get(self, spec: str | Callable[..., Any], **overrides: Any) -> Any:
    """Resolves a spec (name, ``name(args)`` or callable); ``overrides`` add keyword arguments."""
    if callable(spec) and not isinstance(spec, str):
      if overrides:
        return spec(**overrides) if self.factory else functools.partial(spec, **overrides)
      return spec
    if not isinstance(spec, str):
      raise TypeError(f"A {self.kind} spec must be a name or a callable, got {type(spec).__name__}.")
    name, args, kwargs = parse_spec(spec)
    entry = self.lookup(name)
    kwargs.update(overrides)
    try:
      inspect.signature(entry).bind_partial(*args, **kwargs)
    except TypeError as e:  # an unknown keyword, say: one clear line, not a traceback later
      raise ValueError(f"Bad arguments for {self.kind} {spec!r}: {e}.") from None
    except ValueError:  # no signature to check (some builtins)
      pass
    if self.factory:
      return entry(*args, **kwargs)
    return functools.partial(entry, *args, **kwargs) if (args or kwargs) else entry

  def names(self, pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern, in natural order (resnet18 < resnet101)."""
    natural = lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)]
    return sorted((n for n in self._entries if fnmatch.fnmatchcase(n, pattern)), key=natural)

  def __contains__(self, name: str) -> bool:
    return name in self._entries

  def __iter__(self) -> Iterator[str]:
    return iter(self.names())

  def __len__(self) -> int:
    return len(self._entries)
