"""The shared report writer and results.json of the studies (jaxcnn.studies.common)."""

import dataclasses
import json
import math
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.studies import common


def test_table_cells_escape_pipes_empty_none_and_format_floats():
  text = common.markdown_table([("a|b", 0.123456, None, 3, np.float32(2.5), "x\ny")],
                               ("k", "v|x", "w", "n", "f", "t"))
  header, rule, row = text.splitlines()
  assert header == "| k | v\\|x | w | n | f | t |"
  assert rule == "|---|---|---|---|---|---|"
  assert row == "| a\\|b | 0.1235 |  | 3 | 2.5 | x y |"  # None is an empty cell
  assert common.markdown_table([(1 / 3,)], ("x",), floatfmt=".2f").splitlines()[2] == "| 0.33 |"
  with pytest.raises(ValueError, match="2 cells but there are 3 headers"):
    common.markdown_table([(1, 2)], ("a", "b", "c"))


def test_report_blocks_in_order(tmp_path):
  report = common.Report("Study", floatfmt=".3f")
  report.text("Intro | with a pipe.", "").section("Part A").table(
      [("x|y", 1 / 3, None)], ("name", "value", "empty"), caption="One row.")
  report.table([(2.0,)], ("v",), title="Part B", floatfmt=".1f").code("a = 1", "python")
  report.figure(tmp_path / "fig.png", "The figure.").figure("other.png", alt="Other")
  path = report.write(str(tmp_path / "sub" / "study.md"))
  text = pathlib.Path(path).read_text()
  assert text == (
      "# Study\n\nIntro | with a pipe.\n\n## Part A\n\nOne row.\n\n"
      "| name | value | empty |\n|---|---|---|\n| x\\|y | 0.333 |  |\n\n"
      "## Part B\n\n| v |\n|---|\n| 2.0 |\n\n```python\na = 1\n```\n\n"
      "![fig](../fig.png)\n\nThe figure.\n\n![Other](other.png)\n")
  assert report.figures == [str(tmp_path / "fig.png"), "other.png"]
  assert str(report).startswith("# Study\n\nIntro")
  with pytest.raises(ValueError, match="level"):
    report.section("x", level=1)


@dataclasses.dataclass(frozen=True)
class _Inner:
  name: str
  values: np.ndarray


@dataclasses.dataclass(frozen=True)
class _Results:
  runs: dict
  curve: np.ndarray
  device: jnp.ndarray
  score: float
  count: np.int64
  ok: np.bool_
  steps: tuple
  missing: float | None = None


def test_save_results_of_a_dataclass_with_arrays(tmp_path):
  results = _Results(runs={"a": _Inner("a", np.arange(3, dtype=np.int32)), 2: None},
                     curve=np.array([[0.5, np.nan], [np.inf, 1.0]], np.float32),
                     device=jnp.array([1.5, 2.5]), score=np.float64(0.25), count=np.int64(7),
                     ok=np.bool_(True), steps=(1, 2))
  path = common.save_results(results, str(tmp_path))
  assert path == str(tmp_path / "results.json")
  data = json.loads((tmp_path / "results.json").read_text())  # strict JSON: no NaN/Infinity
  assert data == {"runs": {"a": {"name": "a", "values": [0, 1, 2]}, "2": None},
                  "curve": [[0.5, None], [None, 1.0]], "device": [1.5, 2.5], "score": 0.25,
                  "count": 7, "ok": True, "steps": [1, 2], "missing": None}
  assert common.jsonable(np.float32(math.nan)) is None
  assert common.jsonable(jnp.int32(3)) == 3 and common.jsonable(pathlib.Path("a/b")) == "a/b"


def test_save_results_uses_to_dict_when_there_is_one(tmp_path):
  @dataclasses.dataclass(frozen=True)
  class WithParams:
    params: np.ndarray
    loss: float

    def to_dict(self):
      return {"loss": self.loss}

  common.save_results(WithParams(np.ones(3), np.float32(0.5)), str(tmp_path), name="r.json")
  assert json.loads((tmp_path / "r.json").read_text()) == {"loss": 0.5}
