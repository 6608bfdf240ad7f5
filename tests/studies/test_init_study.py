"""The CS231n initialization experiment, checked against mean-field theory.

Theory (Poole et al. 2016; Glorot & Bengio 2010): for a bias-free MLP with weights N(0, s2) and
width n fed unit-Gaussian inputs of dimension n, pre-activations of layer l are Gaussian with
variance q_l, where q_1 = s2 * n and q_{l+1} = s2 * n * E[f(sqrt(q_l) z)^2], z ~ N(0, 1).
The activations then have std sqrt(E[f^2] - E[f]^2), computed here by quadrature in NumPy.
"""

import math

import numpy as np
import pytest

from jaxcnn import cli
from jaxcnn.studies import init_study

WIDTH, LAYERS = 500, 10
# Weight variance of each initializer for a square WIDTH x WIDTH kernel, from its definition.
WEIGHT_VARIANCE = {
    "normal(stddev=0.01)": 0.01**2,
    "normal(stddev=1.0)": 1.0,
    "xavier_normal": 2.0 / (WIDTH + WIDTH),
    "kaiming_normal(nonlinearity='relu')": 2.0 / WIDTH,
}
FUNCTIONS = {"tanh": np.tanh, "relu": lambda u: np.maximum(u, 0.0)}


def gaussian_expectation(g):
  z = np.linspace(-12.0, 12.0, 200_001)
  return np.sum(g(z) * np.exp(-z**2 / 2)) * (z[1] - z[0]) / math.sqrt(2 * math.pi)


def mean_field(f, weight_variance, width=WIDTH, layers=LAYERS):
  """Per-layer (std of activations, pre-activation variance q_l) predicted by mean-field theory."""
  q, out = weight_variance * width, []
  for _ in range(layers):
    mean = gaussian_expectation(lambda z: f(math.sqrt(q) * z))
    second = gaussian_expectation(lambda z: f(math.sqrt(q) * z) ** 2)
    out.append((math.sqrt(max(second - mean**2, 0.0)), q))
    q = weight_variance * width * second
  return out


@pytest.fixture(scope="module")
def cases():
  results = init_study.run_init_study(num_layers=LAYERS, width=WIDTH, num_samples=1000, seed=0)
  return {(c.nonlinearity, c.init): c for c in results}


def stds(case):
  return np.array([s.std for s in case.stats])


def test_runs_every_case_with_one_stat_per_hidden_layer(cases):
  assert set(cases) == {(a, i) for a in ("tanh", "relu") for i in init_study.INITS}
  for case in cases.values():
    assert len(case.stats) == LAYERS
    assert all(s.kind == "activation" and s.op == case.nonlinearity for s in case.stats)


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("init", list(WEIGHT_VARIANCE))
def test_layer_stds_follow_mean_field_theory(cases, act, init):
  theory = np.array([s for s, _ in mean_field(FUNCTIONS[act], WEIGHT_VARIANCE[init])])
  np.testing.assert_allclose(stds(cases[act, init]), theory, rtol=0.15)


def test_small_init_vanishes(cases):
  # Each tanh layer is nearly linear here and multiplies the std by 0.01 * sqrt(500) = 0.22.
  tanh = stds(cases["tanh", "normal(stddev=0.01)"])
  assert tanh[-1] < 1e-5
  np.testing.assert_allclose(tanh[-1] / tanh[0], (0.01 * math.sqrt(WIDTH)) ** (LAYERS - 1),
                             rtol=0.3)
  for act in ("tanh", "relu"):
    assert cases[act, "normal(stddev=0.01)"].verdict == "vanishing"


def test_large_init_saturates_tanh_and_explodes_relu(cases):
  case = cases["tanh", "normal(stddev=1.0)"]
  saturated = np.array([s.saturated for s in case.stats])
  assert np.all(saturated > 0.85)
  # |tanh(u)| > 0.99 iff |u| > atanh(0.99), u ~ N(0, q_l): P = erfc(atanh(0.99) / sqrt(2 q_l)).
  theory = [math.erfc(math.atanh(0.99) / math.sqrt(2 * q))
            for _, q in mean_field(np.tanh, 1.0)]
  np.testing.assert_allclose(saturated, theory, atol=0.03)
  assert case.verdict == "saturated"
  assert cases["relu", "normal(stddev=1.0)"].verdict == "exploding"


def test_xavier_holds_tanh_but_collapses_relu(cases):
  tanh = stds(cases["tanh", "xavier_normal"])
  assert 0.25 < tanh[-1] / tanh[0] < 1.0 and tanh[-1] > 0.1
  assert cases["tanh", "xavier_normal"].verdict == "holding"
  relu = stds(cases["relu", "xavier_normal"])
  assert relu[-1] < 0.1 * relu[0]  # variance halves per layer: ratio 2 ** -4.5 = 0.044
  assert cases["relu", "xavier_normal"].verdict == "collapsing"


def test_kaiming_holds_relu(cases):
  relu = stds(cases["relu", "kaiming_normal(nonlinearity='relu')"])
  assert 0.5 < relu[-1] / relu[0] < 2.0
  assert cases["relu", "kaiming_normal(nonlinearity='relu')"].verdict == "holding"


def test_cases_run_together_equal_cases_run_alone():
  """run_init_study draws an init's weights once for all parameter-free nonlinearities; a
  nonlinearity with parameters of its own (prelu) gets its own draw: every case equals its run
  alone."""
  kw = dict(inits=("normal(stddev=1.0)", "xavier_normal"), num_layers=2, width=8, num_samples=16)
  together = init_study.run_init_study(nonlinearities=("tanh", "prelu", "relu"), **kw)
  alone = [c for act in ("tanh", "prelu", "relu")
           for c in init_study.run_init_study(nonlinearities=(act,), **kw)]
  assert [(c.nonlinearity, c.init) for c in together] == [(c.nonlinearity, c.init) for c in alone]
  for a, b in zip(together, alone):
    np.testing.assert_array_equal(stds(a), stds(b))
    assert a.verdict == b.verdict


def test_rejects_empty_network():
  with pytest.raises(ValueError, match="positive"):
    init_study.run_init_study(num_layers=0)


def test_cli_help_describes_every_option_and_bad_sizes_fail_in_one_line(capsys):
  with pytest.raises(SystemExit) as info:
    cli.main(["init-study", "--help"])
  assert info.value.code == 0
  text = capsys.readouterr().out
  for option, says in (("--out", "output folder"), ("--layers", "number of"),
                       ("--width", "units per layer"), ("--samples", "input samples"),
                       ("--seed", "seed")):
    assert option in text and says in text, option
  with pytest.raises(SystemExit) as info:
    cli.main(["init-study", "--layers", "0"])
  assert info.value.code == 2 and "--layers must be >= 1" in capsys.readouterr().err


def test_cli_prints_tables_and_writes_files(tmp_path, capsys):
  out = tmp_path / "study"
  argv = ["init-study", "--out", str(out), "--layers", "3", "--width", "200", "--samples", "64"]
  assert cli.main(argv) == 0
  printed = capsys.readouterr().out
  assert "hidden layer 3 had mean" in printed and "lecun_normal" in printed
  for act in ("tanh", "relu"):
    for init in init_study.INITS:
      assert f"{act}, {init} -> " in printed
  assert "| relu | xavier_normal |" in printed and str(out) in printed
  pngs = sorted(p.name for p in out.glob("*.png"))
  assert len(pngs) == 9 and "std_by_layer.png" in pngs
  assert all((out / p).read_bytes().startswith(b"\x89PNG") for p in pngs)
  markdown = (out / "init_study.md").read_text()
  assert "| tanh | normal(stddev=0.01) |" in markdown and "hidden layer 3 had mean" in markdown
