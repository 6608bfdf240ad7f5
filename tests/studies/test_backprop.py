"""Backprop engine against jax.grad of independently written functions and CS231n's numbers."""

import functools
import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.studies import backprop, backprop_plots, common


CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "configs"

NEURON = dict(w0=2.0, x0=-1.0, w1=-3.0, x1=-2.0, w2=-3.0)


def _grads(graph):
  return {k: float(v) for k, v in graph.gradients().items()}


def _jax_grads(fn, values):
  names = list(values)
  grads = jax.grad(fn, argnums=tuple(range(len(names))))(*(jnp.float32(values[k]) for k in names))
  return {k: float(g) for k, g in zip(names, grads)}


def test_add_mul_matches_lecture_and_jax_grad():
  graph, f, steps = backprop.evaluate("add_mul")
  assert float(f.value) == -12.0
  grads = _grads(graph)
  assert grads == {"x": -4.0, "y": -4.0, "z": 3.0}  # CS231n lecture 4
  assert grads == pytest.approx(_jax_grads(lambda x, y, z: (x + y) * z,
                                           dict(x=-2.0, y=5.0, z=-4.0)))
  # q = x + y: the mul gate hands q its local gradient z = -4 times upstream 1; x, y get 1 x -4.
  by_node = {s.node: s for s in steps}
  assert (by_node["q"].local_grad, by_node["q"].upstream) == (-4.0, 1.0)
  assert (by_node["z"].local_grad, by_node["z"].upstream) == (3.0, 1.0)
  assert (by_node["x"].local_grad, by_node["x"].upstream, by_node["x"].grad) == (1.0, -4.0, -4.0)


@pytest.mark.parametrize("name", ["sigmoid_circuit", "sigmoid_gate"])
def test_sigmoid_neuron_matches_lecture_and_jax_grad(name):
  graph, f, _ = backprop.evaluate(name)
  assert float(f.value) == pytest.approx(0.73, abs=0.005)
  grads = _grads(graph)
  lecture = dict(w0=-0.20, x0=0.39, w1=-0.39, x1=-0.59, w2=0.20)  # CS231n, 2 decimals
  for k, v in lecture.items():
    assert grads[k] == pytest.approx(v, abs=0.005), k
  neuron = lambda w0, x0, w1, x1, w2: jax.nn.sigmoid(w0 * x0 + w1 * x1 + w2)
  assert grads == pytest.approx(_jax_grads(neuron, NEURON), abs=1e-6)


def test_sigmoid_gate_local_gradient_is_s_times_one_minus_s():
  g = backprop.Graph()
  a = g.input("a", 0.7)
  s = g.sigmoid(a)
  sig = 1 / (1 + math.exp(-0.7))
  assert float(s.value) == pytest.approx(sig, rel=1e-6)
  assert float(s.local_grads[0]) == pytest.approx(sig * (1 - sig), rel=1e-6)


def test_every_step_is_local_times_upstream_and_grads_are_sums():
  _, _, steps = backprop.evaluate("sigmoid_circuit")
  totals = {}
  for s in steps:
    assert s.contribution == pytest.approx(s.local_grad * s.upstream, rel=1e-6)
    totals[s.node] = totals.get(s.node, 0.0) + s.contribution
    assert s.grad == pytest.approx(totals[s.node], rel=1e-6)


@pytest.mark.parametrize("a, b, up", [(3.0, -4.0, 2.0), (-1.5, 0.5, -3.0)])
def test_gate_patterns(a, b, up):
  # add distributes, max routes to the larger input, mul switches the inputs.
  assert tuple(map(float, backprop.gate_gradients("add", a, b, up))) == (up, up)
  da, db = map(float, backprop.gate_gradients("max", a, b, up))
  assert (da, db) == ((up, 0.0) if a > b else (0.0, up))
  assert tuple(map(float, backprop.gate_gradients("mul", a, b, up))) == pytest.approx((b * up, a * up))
  for gate, fn in (("add", jnp.add), ("max", jnp.maximum), ("mul", jnp.multiply)):
    expected = jax.grad(lambda x, y: up * fn(x, y), argnums=(0, 1))(a, b)
    assert tuple(map(float, backprop.gate_gradients(gate, a, b, up))) == pytest.approx(
        tuple(map(float, expected)))


def test_max_tie_splits_like_jax():
  assert tuple(map(float, backprop.gate_gradients("max", 2.0, 2.0))) == (0.5, 0.5)
  assert tuple(map(float, jax.grad(jnp.maximum, argnums=(0, 1))(2.0, 2.0))) == (0.5, 0.5)


def test_gates_example_matches_lecture():
  graph, f, _ = backprop.evaluate("gates")
  assert float(f.value) == -20.0
  assert _grads(graph) == {"x": -8.0, "y": 6.0, "z": 2.0, "w": 0.0}  # CS231n lecture 4


@pytest.mark.parametrize("x", [3.0, -0.5, 2.25])
def test_gradients_add_at_branches(x):
  graph, _, steps = backprop.evaluate("branch", {"x": x})
  assert _grads(graph)["x"] == pytest.approx(2 * x + 1)
  into_x = [s.contribution for s in steps if s.node == "x"]
  assert sorted(into_x) == pytest.approx(sorted([1.0, x, x]))  # via f = sq + x, and twice via x*x
  # A graph where a shared intermediate feeds two gates: f = (a b) + (a b) * c.
  g = backprop.Graph()
  a, b, c = g.input("a", 1.5), g.input("b", -2.0), g.input("c", 0.5)
  p = g.mul(a, b)
  g.backward(g.add(p, g.mul(p, c)))
  expected = _jax_grads(lambda a, b, c: a * b + a * b * c, dict(a=1.5, b=-2.0, c=0.5))
  assert _grads(g) == pytest.approx(expected)


def test_engine_under_jit_and_vmap():
  grads = jax.jit(lambda v: backprop.evaluate("sigmoid_circuit", v)[0].gradients())(
      {k: jnp.float32(v) for k, v in NEURON.items()})
  expected = _jax_grads(lambda w0, x0, w1, x1, w2: jax.nn.sigmoid(w0 * x0 + w1 * x1 + w2), NEURON)
  assert {k: float(v) for k, v in grads.items()} == pytest.approx(expected, abs=1e-6)
  xs = jnp.array([-2.0, 0.0, 1.0, 4.0])
  batched = jax.vmap(lambda x: backprop.evaluate("branch", {"x": x})[0].gradients()["x"])(xs)
  np.testing.assert_allclose(batched, 2 * xs + 1, rtol=1e-6)
  zs = jnp.array([-3.0, 2.0, -1.0])  # max routes to z where z > w = -1, ties split in half
  dz = jax.vmap(lambda z: backprop.evaluate("gates", {"z": z})[0].gradients()["z"])(zs)
  np.testing.assert_allclose(dz, [0.0, 2.0, 1.0])


def test_jax_gradients_helper_matches_engine_for_every_example():
  for name in backprop.EXAMPLES:
    graph, _, _ = backprop.evaluate(name)
    by_jax = {k: float(v) for k, v in backprop.jax_gradients(name).items()}
    assert _grads(graph) == pytest.approx(by_jax, abs=1e-6), name


def test_bad_input_raises():
  with pytest.raises(ValueError, match="Known examples: add_mul"):
    backprop.evaluate("nope")
  with pytest.raises(ValueError, match="takes inputs"):
    backprop.evaluate("add_mul", {"q": 1.0})
  with pytest.raises(ValueError, match="Known gates"):
    backprop.gate_gradients("sub", 1.0, 2.0)
  g1, g2 = backprop.Graph(), backprop.Graph()
  a = g1.input("a", 1.0)
  with pytest.raises(ValueError, match="does not belong"):
    g2.add(a, g2.input("b", 2.0))
  with pytest.raises(ValueError, match="Unknown activation"):
    backprop.mlp({"w1": np.ones((2, 1)), "b1": np.ones(1)}, np.ones((1, 2)), act="gelu")


def _mlp_args():
  """Shapes only (a jaxpr needs no values): no XLA compilation."""
  params = jax.eval_shape(functools.partial(backprop.init_mlp, sizes=(4, 8, 3)), jax.random.key(0))
  return params, jax.ShapeDtypeStruct((2, 4), jnp.float32)


def test_init_mlp_shapes():
  params, _ = _mlp_args()
  assert {k: v.shape for k, v in params.items()} == {
      "w1": (4, 8), "b1": (8,), "w2": (8, 3), "b2": (3,)}
  with pytest.raises(ValueError, match="at least two positive widths"):
    backprop.init_mlp(jax.random.key(0), (4,))


def test_jaxpr_graph_of_mlp_has_primitives_and_edges():
  params, x = _mlp_args()
  d = backprop.jaxpr_graph(lambda params, x: backprop.mlp(params, x, "tanh"), params, x)
  eqns = jax.make_jaxpr(lambda params, x: backprop.mlp(params, x, "tanh"))(params, x).jaxpr.eqns
  assert d.primitives() == {"dot_general": 2, "add": 2, "tanh": 1, "broadcast_in_dim": 2}
  assert sum(n.kind == "op" for n in d.nodes) == len(eqns)
  inputs = {n.label.split("\n")[0]: i for i, n in enumerate(d.nodes) if n.kind == "input"}
  assert set(inputs) == {"params.w1", "params.b1", "params.w2", "params.b2", "x"}
  label = lambda i: d.nodes[i].label.split("\n")[0]
  edges = {(label(s), label(t)) for s, t in d.edges}
  assert {("x", "dot_general"), ("params.w1", "dot_general"), ("add", "tanh"),
          ("tanh", "dot_general"), ("add", "out")} <= edges
  assert len(d.edges) == sum(len(e.invars) for e in eqns) + 1  # every operand, plus the output
  assert [n.label for n in d.nodes if n.kind == "output"] == ["out\nf32[2,3]"]


def test_jaxpr_graph_inlines_relu_and_names_outputs():
  params, x = _mlp_args()
  relu_net = lambda params, x: jax.nn.relu(x @ params["w1"] + params["b1"])
  inlined = backprop.jaxpr_graph(relu_net, params, x).primitives()
  assert inlined["max"] == 1 and "custom_jvp_call" not in inlined
  opaque = backprop.jaxpr_graph(relu_net, params, x, inline=False).primitives()
  assert opaque["custom_jvp_call"] == 1 and "max" not in opaque
  loss = lambda params, x: jnp.sum(backprop.mlp(params, x) ** 2)
  grad_graph = backprop.jaxpr_graph(jax.grad(loss), params, x)
  outs = sorted(n.label.split("\n")[0] for n in grad_graph.nodes if n.kind == "output")
  assert outs == ["out.b1", "out.b2", "out.w1", "out.w2"]
  assert grad_graph.primitives()["transpose"] == 2  # the backward pass of the two matmuls


def test_layout_and_plot(tmp_path):
  graph, _, _ = backprop.evaluate("branch")
  diagram = graph.diagram()
  pos = backprop_plots.layout(diagram)
  assert all(pos[s][0] < pos[t][0] for s, t in diagram.edges)
  assert [n.kind for n in diagram.nodes] == ["input", "op", "output"]
  assert diagram.nodes[0].grad == 7.0 and diagram.nodes[0].value == 3.0
  path = tmp_path / "g.png"
  fig = backprop_plots.plot_graph(graph, str(path), title="t", dpi=40)
  assert fig.axes and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  with pytest.raises(ValueError, match="does not go forward"):
    backprop_plots.layout(backprop.Diagram(diagram.nodes, ((2, 1),)))


def test_run_quick_writes_table_and_figures(tmp_path):
  config = common.load_config(CONFIGS / "backprop.py", "quick")
  results = backprop.run(config, str(tmp_path))
  assert isinstance(results, backprop.Results)
  table = pathlib.Path(results.table).read_text()
  assert table.startswith("# Backpropagation on computational graphs\n\nEach gate")
  assert "| node | value | into gate | local grad | upstream | local x upstream | grad (sum) |" in table
  assert "| input | chain rule | jax.grad | CS231n |" in table
  assert "| x | -4 | -4 | -4 |" in table  # (x + y) z: chain rule, jax.grad, lecture
  assert "![add_mul](graph_add_mul.png)" in table and "```\n{ lambda" in table
  assert results.max_abs_diff_vs_jax < 1e-5
  assert results.max_abs_diff_vs_lecture < 0.006
  assert results.examples["sigmoid_circuit"].chain_rule["x1"] == pytest.approx(-0.59, abs=5e-3)
  assert results.primitives["mlp"]["tanh"] == 1
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["examples"]["add_mul"]["chain_rule"] == {"x": -4.0, "y": -4.0, "z": 3.0}
  assert saved["examples"]["branch"]["lecture"] == {} and saved["gates"][0][0] == "add"
  pngs = sorted(p.name for p in tmp_path.glob("*.png"))
  assert pngs == sorted(results.figures)
  assert {"graph_add_mul.png", "graph_sigmoid_circuit.png", "mlp_jaxpr.png",
          "mlp_grad_jaxpr.png"} <= set(pngs)
  for name in pngs:
    assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
