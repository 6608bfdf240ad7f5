"""The zoo table: diff % bookkeeping, counts against independent computations, the plot."""

import math
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxcnn.models import create_model
from jaxcnn.studies import zoo


def _params_by_eval_shape(model, size):
  """Trainable parameters from the abstract init, summed here (not by jaxcnn.models)."""
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  variables = jax.eval_shape(lambda k, x: model.init(k, x, train=False), jax.random.key(0), x)
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(variables["params"]))


def test_percent_diff_and_precision():
  assert zoo.percent_diff(110, 100) == pytest.approx(10.0)
  assert zoo.percent_diff(90, 100) == pytest.approx(-10.0)
  assert zoo.percent_diff(269_722, 270_000) == pytest.approx(-0.102963, abs=1e-6)
  assert zoo.percent_diff(5, None) is None and zoo.percent_diff(None, 5) is None
  assert zoo.percent_diff(5, 0) is None


def test_family_and_native_resolution():
  assert zoo.family("resnet20") == "resnet" and zoo.family("wrn16_8") == "resnet"
  assert zoo.family("alexnet") == "alexnet" and zoo.family("efficientnet_b3") == "efficientnet"
  assert zoo.native_input_size("resnet50") == 224
  assert zoo.native_input_size("resnet20") == 32  # registry metadata: CIFAR
  assert zoo.native_input_size("densenet_bc_100_12") == 32
  assert zoo.native_input_size("efficientnet_b3") == 300  # Tan & Le 2019: B3 at 300x300
  assert zoo.native_input_shape("simple_cnn") == (8, 8, 1)  # the digits, not a 10-class guess
  with pytest.raises(ValueError, match="Known models"):
    zoo.family("no_such_model")


def test_table_against_independent_counts():
  rows = zoo.zoo_table(["simple_cnn_small", "resnet20", "mobilenet_v1_025"])
  by_name = {r.name: r for r in rows}
  assert [r.name for r in rows] == ["simple_cnn_small", "resnet20", "mobilenet_v1_025"]

  # simple_cnn_small at its default 8x8x1 (the digits), by hand: 3x3x1x16 kernel (no bias) +
  # BatchNorm scale and bias (2 x 16) + dense 16x10 + 10; MACs: 144 per position at 8x8 + 160
  # for the dense layer.
  small = by_name["simple_cnn_small"]
  assert small.input_size == 8 and small.channels == 1
  assert small.params == 3 * 3 * 1 * 16 + 2 * 16 + 16 * 10 + 10
  assert small.macs == 8 * 8 * 3 * 3 * 1 * 16 + 16 * 10
  assert small.published_params is None and small.params_diff_pct is None
  assert small.params_match is None

  for name in ("resnet20", "mobilenet_v1_025"):
    row = by_name[name]
    assert row.params == _params_by_eval_shape(create_model(name), row.input_size)

  r20 = by_name["resnet20"]  # He et al. 2015, Table 6: 0.27M
  assert r20.input_size == 32 and r20.published_params == 0.27e6
  assert r20.params_diff_pct == pytest.approx(100 * (r20.params - 270_000) / 270_000)
  assert r20.params_match is (abs(r20.params - 270_000) <= 5_000)
  assert r20.published_macs is None and r20.macs_diff_pct is None

  mb = by_name["mobilenet_v1_025"]  # Howard et al. 2017, Table 6: 0.5M params, 41M mult-adds
  assert mb.input_size == 224 and mb.published_macs == 41e6
  assert mb.macs_diff_pct == pytest.approx(100 * (mb.macs - 41e6) / 41e6)
  assert abs(mb.macs_diff_pct) < 1.0
  assert mb.images_per_s is None and mb.batch_size is None

  text = zoo.markdown(rows)
  lines = text.splitlines()
  assert lines[0].startswith("| model | family | input | params (ours)")
  assert len(lines) == 2 + len(rows)
  assert "| resnet20 | resnet | 32 | " + f"{r20.params:,}" in text
  assert "| simple_cnn_small | simple | 8x8x1 | 346 |" in text


def test_other_resolution_drops_published_macs():
  (row,) = zoo.zoo_table(["mobilenet_v1_025"], input_size=32)
  assert row.input_size == 32 and row.published_macs is None and row.macs_diff_pct is None
  assert row.published_params == 0.5e6  # parameters do not depend on the resolution
  # Every convolution's output map shrinks by 224/32 = 7 per side (112..7 -> 16..1): 49x fewer
  # positions; the classifier (256 features x 1000 classes) costs the same at any resolution.
  (native,) = zoo.zoo_table(["mobilenet_v1_025"])
  dense = 256 * 1000
  assert row.macs == pytest.approx((native.macs - dense) / 49 + dense, rel=1e-9)


def test_throughput_is_measured_on_this_device():
  model = create_model("simple_cnn_small")
  out = zoo.train_throughput(model, 8, batch_size=4, min_steps=2, max_seconds=0.0)
  assert out["steps"] == 2 and out["seconds"] > 0
  assert out["images_per_s"] == pytest.approx(2 * 4 / out["seconds"])
  with pytest.raises(ValueError, match="batch_size"):
    zoo.train_throughput(model, 8, batch_size=0)


def test_plot_and_run_write_files(tmp_path):
  rows = zoo.zoo_table(["simple_cnn_small", "resnet20"])
  path = tmp_path / "pm.png"
  fig = zoo.plot_params_macs(rows, str(path))
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  ax = fig.axes[0]
  assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
  with pytest.raises(ValueError, match="at least one row"):
    zoo.plot_params_macs([])

  config = ml_collections.ConfigDict(dict(
      quick=True, names=("simple_cnn_small", "resnet20"), throughput=False,
      throughput_names=(), batch_size=4, throughput_max_macs=0.0, throughput_seconds=0.0,
      plot_exclude_families=("simple",), dpi=50))
  out = zoo.run(config, str(tmp_path / "run"))
  assert (tmp_path / "run" / "zoo_table.md").read_text().count("| resnet20 |") == 1
  assert (tmp_path / "run" / "params_macs.png").stat().st_size > 0
  assert (tmp_path / "run" / "zoo_table.json").stat().st_size > 0
  assert out["max_abs_params_diff_pct"] == pytest.approx(abs(rows[1].params_diff_pct))
  assert math.isnan(out["max_abs_macs_diff_pct"])  # neither has published MACs at 32x32


def _docs_row(name):
  path = pathlib.Path(__file__).resolve().parents[2] / "docs" / "models.md"
  for line in path.read_text().splitlines():
    if line.startswith(f"| {name} |"):
      return [c.strip() for c in line.strip().strip("|").split("|")]
  raise AssertionError(f"{name} has no row in docs/models.md")


@pytest.mark.parametrize("name", ["resnet20", "alexnet", "mobilenet_v1_025", "densenet_bc_100_12"])
def test_rows_match_docs_table(name):
  """The rows built from the registry metadata equal the published docs/models.md table (but for
  the measured images/s column)."""
  (row,) = zoo.table_rows(zoo.zoo_table([name]))
  rate = zoo.HEADERS.index("train images/s")
  expected = _docs_row(name)
  assert list(row[:rate]) + list(row[rate + 1:]) == expected[:rate] + expected[rate + 1:]
