"""One module-call tracer: which modules a forward pass calls, with what, and what they return.

Every per-layer measurement in jaxcnn (diagnostics' activation and gradient statistics, the
data-dependent initializations LSUV and Kraehenbuehl, the zoo's per-layer MAC count and summary
table) is collected from outside the model by this tracer, built on
:func:`flax.linen.intercept_methods`; no model code changes::

  with tracing.trace((nn.Dense, nn.Conv)) as calls:
    model.apply(variables, x)
  [(c.name, c.output.shape) for c in calls]

Only ``__call__`` of bound modules is recorded. The list is in *return* order (the order outputs
are produced: a module after the modules it calls); ``Call.index`` is the *call* order (a parent
before its children). ``perturbations[i]`` is added to the i-th recorded output, which is how the
gradient of a loss with respect to intermediate outputs is taken (differentiate with respect to
zero perturbations). A function that is already jitted runs its cached trace and bypasses the
interceptor: trace the un-jitted function and jit the whole thing.

References: Flax, ``flax.linen.intercept_methods``
(https://flax.readthedocs.io/en/latest/api_reference/flax.linen/module.html).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterator, Sequence

import flax.linen as nn

__all__ = ["Call", "trace"]


@dataclasses.dataclass
class Call:
  """One recorded module call.

  Attributes:
    module: the (bound) module; read its fields, not its variables, once the trace has ended.
    path: its module path, e.g. ``("ConvBNAct_0", "Conv_0")``; ``()`` for the root.
    index: position in call order (a parent before its children).
    args, kwargs: the call's inputs.
    output: what the call returned (with its perturbation added, if any).
    variables: the module's variables (its own and its children's, by collection) when the call
      returned, e.g. ``call.variables["params"]["kernel"]``.
  """

  module: nn.Module
  path: tuple[str, ...]
  index: int
  args: tuple
  kwargs: dict
  output: Any = None
  variables: Any = None

  @property
  def name(self) -> str:
    """The module path joined by ``/`` (``""`` for the root module)."""
    return "/".join(self.path)


@contextlib.contextmanager
def trace(types: type | tuple[type, ...] = nn.Module, *,
          perturbations: Sequence[Any] | None = None) -> Iterator[list[Call]]:
  """Records every ``__call__`` of a module of ``types`` run inside the ``with`` block.

  Args:
    types: module classes to record (``isinstance``); default every module.
    perturbations: if given, ``perturbations[i]`` is added to the output of the i-th recorded
      call (return order) before the model sees it.

  Yields:
    A list that fills with one :class:`Call` per recorded call, in return order.
  """
  calls: list[Call] = []
  started = [0]

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if (context.method_name != "__call__" or module.scope is None
        or not isinstance(module, types)):
      return next_fun(*args, **kwargs)
    index = started[0]
    started[0] += 1
    out = next_fun(*args, **kwargs)
    if perturbations is not None:
      out = out + perturbations[len(calls)]
    calls.append(Call(module, tuple(module.path), index, args, kwargs, out, module.variables))
    return out

  with nn.intercept_methods(interceptor):
    yield calls
