"""Backpropagation on computational graphs, node by node, beside ``jax.grad``.

A tiny engine: each gate computes its output and its *local* gradients (d output / d input) in
the forward pass; the backward pass visits the nodes in reverse topological order and hands each
input ``local x upstream``, adding the contributions where a value branches. The CS231n examples:

* ``f(x, y, z) = (x + y) z`` at (-2, 5, -4): df/dx = df/dy = -4, df/dz = 3;
* the sigmoid neuron ``1 / (1 + exp(-(w0 x0 + w1 x1 + w2)))`` at w = (2, -3, -3), x = (-1, -2):
  output 0.73, dw = (-0.20, -0.39, 0.20), dx = (0.39, -0.59), as a circuit of elementary gates
  and with one sigmoid gate (local gradient ``s (1 - s)``);
* gate patterns in ``2 (x y + max(z, w))``: add distributes the upstream gradient, max routes it
  to the larger input, mul switches the inputs (each gets the other's value times upstream);
* branches: in ``x * x + x`` the three uses of x add up to 2x + 1.

``jaxpr_graph`` turns ``jax.make_jaxpr`` of a function into nodes and edges;
:func:`jaxcnn.studies.backprop_plots.plot_graph` draws either kind of graph left to right with
matplotlib. :func:`run` returns a :class:`Results` and writes its report with
:class:`jaxcnn.studies.common.Report`.

References: CS231n (Stanford), lecture 4 "Backpropagation and Neural Networks" and the notes
"Backpropagation, Intuitions"; Rumelhart, Hinton & Williams 1986, "Learning representations by
back-propagating errors".
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import inspect
import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax.extend import core as jax_core
import numpy as np

from jaxcnn.studies import backprop_plots as plots
from jaxcnn.studies import common

# ----------------------------------------------------------------------------------------------
# The engine.


def _xp(*values):
  """NumPy for concrete numbers (no XLA compile per scalar op); jax.numpy for traced values
  (under jit, vmap or grad)."""
  return jnp if any(isinstance(v, jax.core.Tracer) for v in values) else np


@dataclasses.dataclass(eq=False)
class Node:
  """One value in the graph.

  Attributes:
    name: label used in tables and drawings.
    op: "input", "add", "mul", "max", "exp", "scale", "shift", "reciprocal" or "sigmoid".
    inputs: the nodes this one is computed from.
    value: forward value.
    local_grads: d value / d inputs[i], computed in the forward pass.
    const: the constant of "scale" (c * a) and "shift" (a + c).
    grad: d output / d value, filled by ``Graph.backward``.
  """

  name: str
  op: str
  inputs: tuple["Node", ...] = ()
  value: Any = 0.0
  local_grads: tuple[Any, ...] = ()
  const: float | None = None
  grad: Any = 0.0

  @property
  def expression(self) -> str:
    """How the node is computed, e.g. ``"x + y"``."""
    a = self.inputs[0].name if self.inputs else ""
    b = self.inputs[1].name if len(self.inputs) > 1 else ""
    c = f"{self.const:g}" if self.const is not None else ""
    return {"input": "input", "add": f"{a} + {b}", "mul": f"{a} * {b}", "max": f"max({a}, {b})",
            "exp": f"exp({a})", "scale": f"{c} * {a}", "shift": f"{a} + {c}",
            "reciprocal": f"1 / {a}", "sigmoid": f"sigmoid({a})"}[self.op]


@dataclasses.dataclass(frozen=True)
class BackwardStep:
  """One chain-rule product: ``node`` receives ``local_grad * upstream`` from ``gate``.

  ``grad`` is the node's gradient after adding this contribution (running sum over branches).
  """

  node: str
  value: float
  gate: str
  local_grad: float
  upstream: float
  contribution: float
  grad: float


class Graph:
  """A scalar computational graph built gate by gate; nodes are kept in creation order."""

  def __init__(self):
    self.nodes: list[Node] = []

  def _add(self, op, inputs, value, local_grads, name, const=None) -> Node:
    node = Node(name or f"n{len(self.nodes)}", op, tuple(inputs), value, tuple(local_grads), const)
    for inp in node.inputs:
      if not any(inp is n for n in self.nodes):
        raise ValueError(f"Input {inp.name!r} of {node.name!r} does not belong to this graph.")
    self.nodes.append(node)
    return node

  def input(self, name: str, value) -> Node:
    """A leaf holding ``value`` (a number, kept as float32, or a traced scalar under jit)."""
    value = value if isinstance(value, jax.core.Tracer) else np.float32(value)
    return self._add("input", (), value, (), name)

  def add(self, a: Node, b: Node, name: str | None = None) -> Node:
    """a + b; local gradients (1, 1): the gate distributes the upstream gradient."""
    return self._add("add", (a, b), a.value + b.value, (1.0, 1.0), name)

  def mul(self, a: Node, b: Node, name: str | None = None) -> Node:
    """a * b; local gradients (b, a): the gate switches its inputs."""
    return self._add("mul", (a, b), a.value * b.value, (b.value, a.value), name)

  def max(self, a: Node, b: Node, name: str | None = None) -> Node:
    """max(a, b); local gradient 1 for the larger input, 0 for the other (ties split 1/2, 1/2
    as in ``jax.grad`` of ``jnp.maximum``): the gate routes the upstream gradient."""
    xp = _xp(a.value, b.value)
    da = xp.where(a.value > b.value, 1.0, xp.where(a.value == b.value, 0.5, 0.0))
    return self._add("max", (a, b), xp.maximum(a.value, b.value), (da, 1.0 - da), name)

  def exp(self, a: Node, name: str | None = None) -> Node:
    """exp(a); local gradient exp(a)."""
    out = _xp(a.value).exp(a.value)
    return self._add("exp", (a,), out, (out,), name)

  def scale(self, a: Node, c: float, name: str | None = None) -> Node:
    """c * a for a constant c; local gradient c."""
    return self._add("scale", (a,), c * a.value, (c,), name, const=c)

  def shift(self, a: Node, c: float, name: str | None = None) -> Node:
    """a + c for a constant c; local gradient 1."""
    return self._add("shift", (a,), a.value + c, (1.0,), name, const=c)

  def reciprocal(self, a: Node, name: str | None = None) -> Node:
    """1 / a; local gradient -1 / a^2."""
    return self._add("reciprocal", (a,), 1.0 / a.value, (-1.0 / a.value**2,), name)

  def sigmoid(self, a: Node, name: str | None = None) -> Node:
    """1 / (1 + exp(-a)) as one gate; local gradient s (1 - s) from its own output s."""
    s = 1.0 / (1.0 + _xp(a.value).exp(-a.value))
    return self._add("sigmoid", (a,), s, (s * (1.0 - s),), name)

  def backward(self, output: Node, grad=1.0) -> list[BackwardStep]:
    """Backpropagates ``grad`` (d loss / d output) from ``output`` to every node it depends on.

    Visits nodes in reverse creation order (a reverse topological order); each input gets
    ``local_grad * upstream`` added to its ``grad``. Returns the steps for a table (their numbers
    are Python floats, so under jit use the nodes' ``grad`` or ``gradients()`` instead).
    """
    if not any(output is n for n in self.nodes):
      raise ValueError(f"Output {output.name!r} does not belong to this graph.")
    needed, stack = set(), [output]
    while stack:
      node = stack.pop()
      if id(node) not in needed:
        needed.add(id(node))
        stack.extend(node.inputs)
    for node in self.nodes:
      node.grad = 0.0
    output.grad = grad if isinstance(grad, jax.core.Tracer) else np.float32(grad)
    steps = []
    concrete = not any(isinstance(n.value, jax.core.Tracer) for n in self.nodes)
    for node in reversed(self.nodes):
      if id(node) not in needed:
        continue
      upstream = node.grad
      for inp, local in zip(node.inputs, node.local_grads):
        contribution = local * upstream
        inp.grad = inp.grad + contribution
        if concrete:
          steps.append(BackwardStep(inp.name, float(inp.value), f"{node.name} = {node.expression}",
                                    float(local), float(upstream), float(contribution),
                                    float(inp.grad)))
    return steps

  def gradients(self) -> dict[str, Any]:
    """{input name: grad} for the leaves, after ``backward``."""
    return {n.name: n.grad for n in self.nodes if n.op == "input"}

  def diagram(self) -> "Diagram":
    """Nodes and edges for ``backprop_plots.plot_graph``, with forward values and gradients
    attached."""
    index = {id(n): i for i, n in enumerate(self.nodes)}
    consumed = {id(inp) for n in self.nodes for inp in n.inputs}
    nodes = tuple(
        DiagramNode(label=n.name if n.op == "input" else f"{n.name} = {n.expression}",
                    kind="input" if n.op == "input" else
                    ("op" if id(n) in consumed else "output"),
                    value=float(n.value), grad=float(n.grad))
        for n in self.nodes)
    edges = tuple((index[id(inp)], index[id(n)]) for n in self.nodes for inp in n.inputs)
    return Diagram(nodes, edges)


def gate_gradients(gate: str, a: float, b: float, upstream: float = 1.0) -> tuple[Any, Any]:
  """(d/da, d/db) of ``upstream * gate(a, b)`` for gate "add", "mul" or "max" via the engine."""
  if gate not in ("add", "mul", "max"):
    raise ValueError(f"Unknown gate {gate!r}. Known gates: add, max, mul.")
  g = Graph()
  na, nb = g.input("a", a), g.input("b", b)
  g.backward(getattr(g, gate)(na, nb, "out"), upstream)
  return na.grad, nb.grad


# ----------------------------------------------------------------------------------------------
# The lecture's examples.


@dataclasses.dataclass(frozen=True)
class Example:
  """A function as an engine graph (``build``) and as plain jax.numpy (``fn``) for jax.grad.

  ``lecture_grads`` / ``lecture_output`` are the numbers published in CS231n (2 decimals), if any.
  """

  name: str
  title: str
  inputs: dict[str, float]
  build: Callable[[Graph, dict[str, Node]], Node]
  fn: Callable[..., Any]
  lecture_grads: dict[str, float] | None = None
  lecture_output: float | None = None


def _build_add_mul(g, v):
  q = g.add(v["x"], v["y"], "q")
  return g.mul(q, v["z"], "f")


def _build_sigmoid_circuit(g, v):
  m0 = g.mul(v["w0"], v["x0"], "m0")
  m1 = g.mul(v["w1"], v["x1"], "m1")
  s = g.add(g.add(m0, m1, "d"), v["w2"], "s")
  e = g.exp(g.scale(s, -1.0, "ns"), "e")
  return g.reciprocal(g.shift(e, 1.0, "den"), "f")


def _build_sigmoid_gate(g, v):
  m0 = g.mul(v["w0"], v["x0"], "m0")
  m1 = g.mul(v["w1"], v["x1"], "m1")
  s = g.add(g.add(m0, m1, "d"), v["w2"], "s")
  return g.sigmoid(s, "f")


def _build_gates(g, v):
  p = g.mul(v["x"], v["y"], "p")
  m = g.max(v["z"], v["w"], "m")
  return g.scale(g.add(p, m, "q"), 2.0, "f")


def _build_branch(g, v):
  return g.add(g.mul(v["x"], v["x"], "sq"), v["x"], "f")


_NEURON = dict(w0=2.0, x0=-1.0, w1=-3.0, x1=-2.0, w2=-3.0)
_NEURON_GRADS = dict(w0=-0.20, x0=0.39, w1=-0.39, x1=-0.59, w2=0.20)


def _neuron(w0, x0, w1, x1, w2):
  return 1.0 / (1.0 + jnp.exp(-(w0 * x0 + w1 * x1 + w2)))


EXAMPLES: dict[str, Example] = {e.name: e for e in (
    Example("add_mul", "f(x, y, z) = (x + y) z", dict(x=-2.0, y=5.0, z=-4.0), _build_add_mul,
            lambda x, y, z: (x + y) * z, dict(x=-4.0, y=-4.0, z=3.0), -12.0),
    Example("sigmoid_circuit", "sigmoid neuron 1 / (1 + exp(-(w0 x0 + w1 x1 + w2))), gate by gate",
            _NEURON, _build_sigmoid_circuit, _neuron, _NEURON_GRADS, 0.73),
    Example("sigmoid_gate", "sigmoid neuron with one sigmoid gate, local gradient s (1 - s)",
            _NEURON, _build_sigmoid_gate, _neuron, _NEURON_GRADS, 0.73),
    Example("gates", "f = 2 (x y + max(z, w)): add distributes, max routes, mul switches",
            dict(x=3.0, y=-4.0, z=2.0, w=-1.0), _build_gates,
            lambda x, y, z, w: 2.0 * (x * y + jnp.maximum(z, w)),
            dict(x=-8.0, y=6.0, z=2.0, w=0.0), -20.0),
    Example("branch", "f = x * x + x: gradients add where x branches", dict(x=3.0),
            _build_branch, lambda x: x * x + x),
)}


def get_example(name: str) -> Example:
  """The example called ``name``; ValueError listing the known ones otherwise."""
  if name not in EXAMPLES:
    raise ValueError(f"Unknown backprop example {name!r}. Known examples: {', '.join(EXAMPLES)}.")
  return EXAMPLES[name]


def evaluate(name: str, values: dict[str, Any] | None = None
             ) -> tuple[Graph, Node, list[BackwardStep]]:
  """Builds example ``name`` at ``values`` (default: the lecture's), runs forward and backward.

  Works under ``jax.jit`` (read ``graph.gradients()``; the steps list is then empty).
  """
  example = get_example(name)
  values = {**example.inputs, **(values or {})}
  if set(values) != set(example.inputs):
    raise ValueError(f"Example {name!r} takes inputs {sorted(example.inputs)}, got "
                     f"{sorted(values)}.")
  graph = Graph()
  leaves = {k: graph.input(k, values[k]) for k in example.inputs}
  output = example.build(graph, leaves)
  steps = graph.backward(output)
  return graph, output, steps


def jax_gradients(name: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
  """{input: df/dinput} of the example's plain jax.numpy function by ``jax.grad``."""
  example = get_example(name)
  values = {**example.inputs, **(values or {})}
  args = [jnp.asarray(values[k], jnp.float32) for k in example.inputs]
  return dict(zip(example.inputs, _jitted_grad(name)(*args)))


@functools.lru_cache(maxsize=None)
def _jitted_grad(name: str):
  example = EXAMPLES[name]
  return jax.jit(jax.grad(example.fn, argnums=tuple(range(len(example.inputs)))))


# ----------------------------------------------------------------------------------------------
# jaxprs as graphs.


@dataclasses.dataclass(frozen=True)
class DiagramNode:
  """A node to draw. ``kind``: "input", "const", "literal", "op" or "output"."""

  label: str
  kind: str
  primitive: str | None = None
  value: float | None = None
  grad: float | None = None


@dataclasses.dataclass(frozen=True)
class Diagram:
  """A directed graph to draw: ``edges`` are (source index, destination index) into ``nodes``."""

  nodes: tuple[DiagramNode, ...]
  edges: tuple[tuple[int, int], ...]

  def primitives(self) -> collections.Counter:
    """How often each primitive occurs among the op nodes."""
    return collections.Counter(n.primitive for n in self.nodes if n.primitive)


# Call-like primitives whose inner jaxpr is drawn inline instead of as one opaque node.
_INLINE = ("jit", "pjit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call",
           "custom_vjp_call_jaxpr", "remat", "checkpoint")


def _inner_jaxpr(eqn):
  if eqn.primitive.name not in _INLINE:
    return None
  for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
    sub = eqn.params.get(key)
    if isinstance(sub, jax_core.ClosedJaxpr):
      jaxpr, consts = sub.jaxpr, sub.consts
    elif isinstance(sub, jax_core.Jaxpr):
      jaxpr, consts = sub, []
    else:
      continue
    if len(jaxpr.invars) == len(eqn.invars) and len(jaxpr.outvars) == len(eqn.outvars):
      return jaxpr, consts
  return None


def _arg_names(fn, args) -> list[str]:
  try:
    params = list(inspect.signature(fn).parameters)
  except (TypeError, ValueError):
    params = []
  names = []
  for i, arg in enumerate(args):
    base = params[i] if i < len(params) else f"arg{i}"
    for path, _ in jax.tree_util.tree_flatten_with_path(arg)[0]:
      suffix = jax.tree_util.keystr(path, simple=True, separator=".")
      names.append(f"{base}.{suffix}" if suffix else base)
  return names


def jaxpr_graph(fn: Callable[..., Any], *args, inline: bool = True) -> Diagram:
  """The jaxpr of ``fn(*args)`` as a Diagram: one node per input, literal, equation and output.

  Inputs are named after ``fn``'s parameters and pytree paths (``params.w1``). With ``inline``
  the bodies of call-like primitives (jit, custom_jvp_call, ...) are drawn in place, so
  ``jax.nn.relu`` shows up as its ``max``.
  """
  closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
  nodes: list[DiagramNode] = []
  edges: list[tuple[int, int]] = []

  def new(label, kind, primitive=None):
    nodes.append(DiagramNode(label, kind, primitive))
    return len(nodes) - 1

  def short(v):
    return v.aval.str_short(short_dtypes=True)

  def source(v, env):
    if isinstance(v, jax_core.Literal):
      return new(f"{v.val}", "literal")
    return env[v]

  def walk(jaxpr, env):
    for eqn in jaxpr.eqns:
      inner = _inner_jaxpr(eqn) if inline else None
      if inner is not None:
        sub, consts = inner
        sub_env = {cv: new(f"const\n{short(cv)}", "const") for cv in sub.constvars[:len(consts)]}
        sub_env.update({iv: source(ov, env) for iv, ov in zip(sub.invars, eqn.invars)})
        walk(sub, sub_env)
        env.update({ov: source(iv, sub_env) for ov, iv in zip(eqn.outvars, sub.outvars)})
        continue
      sources = [source(v, env) for v in eqn.invars]  # literals first: keep topological order
      shapes = ", ".join(short(v) for v in eqn.outvars)
      node = new(f"{eqn.primitive.name}\n{shapes}", "op", eqn.primitive.name)
      edges.extend((src, node) for src in sources)
      env.update({v: node for v in eqn.outvars})

  env = {v: new(f"const\n{short(v)}", "const") for v in closed.jaxpr.constvars}
  env.update({v: new(f"{name}\n{short(v)}", "input")
              for v, name in zip(closed.jaxpr.invars, _arg_names(fn, args))})
  walk(closed.jaxpr, env)
  out_names = _arg_names(lambda out: None, (out_shape,))
  for v, name in zip(closed.jaxpr.outvars, out_names):
    out = new(f"{name}\n{short(v)}", "output")
    edges.append((source(v, env), out))
  return Diagram(tuple(nodes), tuple(edges))


# ----------------------------------------------------------------------------------------------
# The study.


def init_mlp(key: jax.Array, sizes: Sequence[int]) -> dict[str, jax.Array]:
  """Parameters {w1, b1, w2, b2, ...} of an MLP with layer widths ``sizes`` (LeCun-normal)."""
  if len(sizes) < 2 or min(sizes) < 1:
    raise ValueError(f"sizes must list at least two positive widths, got {tuple(sizes)}.")
  params = {}
  for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), 1):
    key, sub = jax.random.split(key)
    params[f"w{i}"] = jax.random.normal(sub, (fan_in, fan_out)) / jnp.sqrt(fan_in)
    params[f"b{i}"] = jnp.zeros((fan_out,))
  return params


def mlp(params: dict[str, jax.Array], x: jax.Array, act: str = "tanh") -> jax.Array:
  """``act(x W1 + b1) W2 + b2 ...``; act is "tanh" or "relu" (``jnp.maximum(h, 0)``)."""
  acts = {"tanh": jnp.tanh, "relu": lambda h: jnp.maximum(h, 0.0)}
  if act not in acts:
    raise ValueError(f"Unknown activation {act!r}. Known: {', '.join(acts)}.")
  depth = len(params) // 2
  for i in range(1, depth + 1):
    x = x @ params[f"w{i}"] + params[f"b{i}"]
    if i < depth:
      x = acts[act](x)
  return x


FORWARD_HEADERS = ("node", "computes", "value")
BACKWARD_HEADERS = ("node", "value", "into gate", "local grad", "upstream", "local x upstream",
                    "grad (sum)")
GRADIENT_HEADERS = ("input", "chain rule", "jax.grad", "CS231n")
GATE_HEADERS = ("gate", "a", "b", "upstream", "d/da", "d/db", "pattern")


def forward_rows(graph: Graph) -> list[tuple[Any, ...]]:
  """The cells of :data:`FORWARD_HEADERS`: node, what it computes, forward value."""
  return [(n.name, n.expression, float(n.value)) for n in graph.nodes]


def backward_rows(steps: Sequence[BackwardStep]) -> list[tuple[Any, ...]]:
  """The cells of :data:`BACKWARD_HEADERS`: one row per chain-rule product, in backward order."""
  return [(s.node, s.value, s.gate, s.local_grad, s.upstream, s.contribution, s.grad)
          for s in steps]


def gradient_rows(name: str, graph: Graph) -> list[tuple[Any, ...]]:
  """The cells of :data:`GRADIENT_HEADERS`: each input's gradient by the chain rule
  (``graph``), by jax.grad and in CS231n (None where the lecture gives none)."""
  example = get_example(name)
  chain = graph.gradients()
  by_jax = jax_gradients(name, {n.name: n.value for n in graph.nodes if n.op == "input"})
  lecture = example.lecture_grads or {}
  return [(k, float(chain[k]), float(by_jax[k]), lecture.get(k)) for k in example.inputs]


def forward_table(graph: Graph) -> str:
  """Markdown: node, what it computes, forward value."""
  return common.markdown_table(forward_rows(graph), FORWARD_HEADERS)


def backward_table(steps: Sequence[BackwardStep]) -> str:
  """Markdown: one row per chain-rule product, in backward order."""
  return common.markdown_table(backward_rows(steps), BACKWARD_HEADERS)


def gradient_table(name: str, graph: Graph) -> str:
  """Markdown: each input's gradient by the chain rule (``graph``), by jax.grad and in CS231n."""
  return common.markdown_table(gradient_rows(name, graph), GRADIENT_HEADERS)


@dataclasses.dataclass(frozen=True)
class ExampleResult:
  """One example at the lecture's inputs.

  Attributes:
    name, title: the example (:data:`EXAMPLES`).
    output: the forward value f.
    chain_rule, jax_grad, lecture: ``{input: df/dinput}`` by the engine, by ``jax.grad`` and as
      published in CS231n (empty if the lecture gives none).
    max_abs_diff_vs_jax, max_abs_diff_vs_lecture: the largest differences (the lecture's
      output included).
    figure: the drawing's file name.
  """

  name: str
  title: str
  output: float
  chain_rule: dict[str, float]
  jax_grad: dict[str, float]
  lecture: dict[str, float]
  max_abs_diff_vs_jax: float
  max_abs_diff_vs_lecture: float
  figure: str


@dataclasses.dataclass(frozen=True)
class Results:
  """What the report shows.

  Attributes:
    examples: ``{name: ExampleResult}`` in ``config.examples`` order.
    gates: rows of :data:`GATE_HEADERS` (add, max, mul at ``config.gate_inputs``).
    primitives: ``{"mlp": {primitive: count}, "mlp_grad": {...}}`` of the drawn jaxprs.
    max_abs_diff_vs_jax, max_abs_diff_vs_lecture: over every example.
    table: the report's path; figures: the figures' file names (in the run folder).
  """

  examples: dict[str, ExampleResult]
  gates: tuple[tuple[Any, ...], ...]
  primitives: dict[str, dict[str, int]]
  max_abs_diff_vs_jax: float
  max_abs_diff_vs_lecture: float
  table: str
  figures: tuple[str, ...]

  def to_dict(self) -> dict[str, Any]:
    """JSON-able (:func:`jaxcnn.studies.common.jsonable`)."""
    return common.jsonable(self)


def example_result(name: str, dpi: int, workdir: str, report: common.Report) -> ExampleResult:
  """Evaluates example ``name``, draws its graph into ``workdir`` and adds its section (forward,
  backward and gradient tables and the drawing) to ``report``."""
  example = get_example(name)
  graph, output, steps = evaluate(name)
  chain = {k: float(v) for k, v in graph.gradients().items()}
  by_jax = {k: float(v) for k, v in jax_gradients(name).items()}
  png = f"graph_{name}.png"
  plots.plot_graph(graph, os.path.join(workdir, png), dpi=dpi,
                   title=f"{example.title}  (green: value, red: gradient)")
  inputs = ", ".join(f"{k}={v:g}" for k, v in example.inputs.items())
  lecture = example.lecture_grads or {}
  report.section(example.title).text(
      f"At {inputs}: f = {float(output.value):.4g}"
      + (f" (CS231n: {example.lecture_output:g})" if example.lecture_output is not None else "")
      + ".")
  report.table(forward_rows(graph), FORWARD_HEADERS, caption="Forward pass:")
  report.table(backward_rows(steps), BACKWARD_HEADERS,
               caption="Backward pass, last node first (grad = sum of local x upstream over the "
                       "gates a node feeds):")
  report.table(gradient_rows(name, graph), GRADIENT_HEADERS, caption="Gradients:")
  report.figure(png, alt=name)
  diff_jax = max(abs(chain[k] - by_jax[k]) for k in chain)
  diff_lecture = max([abs(chain[k] - v) for k, v in lecture.items()]
                     + ([abs(float(output.value) - example.lecture_output)]
                        if example.lecture_output is not None else []), default=0.0)
  return ExampleResult(name=name, title=example.title, output=float(output.value),
                       chain_rule=chain, jax_grad=by_jax, lecture=dict(lecture),
                       max_abs_diff_vs_jax=diff_jax, max_abs_diff_vs_lecture=diff_lecture,
                       figure=png)


def gate_rows(a: float, b: float, upstream: float) -> list[tuple[Any, ...]]:
  """The cells of :data:`GATE_HEADERS` for the add, max and mul gates."""
  rows = []
  for gate, pattern in (("add", "distributes: both get upstream"),
                        ("max", "routes: the larger input gets upstream, the other 0"),
                        ("mul", "switches: each gets the other's value x upstream")):
    da, db = gate_gradients(gate, a, b, upstream)
    rows.append((gate, a, b, upstream, float(da), float(db), pattern))
  return rows


def run(config, workdir: str) -> Results:
  """Writes ``backprop.md`` (per-example forward/backward tables beside jax.grad and CS231n),
  ``results.json`` and PNG drawings of each graph and of the jaxprs of a small MLP and of its
  loss gradient into ``workdir``."""
  dpi = config.dpi
  os.makedirs(workdir, exist_ok=True)
  report = common.Report("Backpropagation on computational graphs")
  report.text("Each gate computes its value and its local gradients in the forward pass; the "
              "backward pass multiplies local gradient by upstream gradient (chain rule) node by "
              "node. Numbers beside `jax.grad` of the same function and the values published in "
              "CS231n (2 decimals).")
  examples = {name: example_result(name, dpi, workdir, report) for name in config.examples}

  gates = gate_rows(*config.gate_inputs)
  report.table(gates, GATE_HEADERS, title="Gate patterns")

  sizes = tuple(config.mlp.sizes)  # a jaxpr depends on shapes only: trace without computing
  params = jax.eval_shape(functools.partial(init_mlp, sizes=sizes), jax.random.key(0))
  x = jax.ShapeDtypeStruct((config.mlp.batch, sizes[0]), jnp.float32)
  net = lambda params, x: mlp(params, x, config.mlp.act)
  loss = lambda params, x: jnp.mean(net(params, x) ** 2)
  figures = [r.figure for r in examples.values()]
  primitives = {}
  for label, fn in (("mlp", net), ("mlp_grad", jax.grad(loss))):
    diagram = jaxpr_graph(fn, params, x)
    png = f"{label}_jaxpr.png"
    what = "forward pass" if label == "mlp" else "gradient of the mean squared output"
    plots.plot_graph(diagram, os.path.join(workdir, png), dpi=dpi,
                     title=f"jaxpr of the {len(sizes) - 1}-layer MLP {sizes} ({config.mlp.act}), "
                           f"{what}")
    primitives[label] = dict(diagram.primitives())
    figures.append(png)
    report.section(f"jaxpr of the MLP, {what}").code(str(jax.make_jaxpr(fn)(params, x)))
    report.table(sorted(primitives[label].items()), ("primitive", "count")).figure(png, alt=label)

  table = report.write(os.path.join(workdir, "backprop.md"))
  results = Results(
      examples=examples, gates=tuple(gates), primitives=primitives,
      max_abs_diff_vs_jax=max((r.max_abs_diff_vs_jax for r in examples.values()), default=0.0),
      max_abs_diff_vs_lecture=max((r.max_abs_diff_vs_lecture for r in examples.values()),
                                  default=0.0),
      table=table, figures=tuple(figures))
  common.save_results(results, workdir)
  print(f"backprop: max |chain rule - jax.grad| = {results.max_abs_diff_vs_jax:.2e}, "
        f"max |chain rule - CS231n| = {results.max_abs_diff_vs_lecture:.3f}", flush=True)
  return results
