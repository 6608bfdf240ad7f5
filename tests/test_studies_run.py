"""Every notebook and every experiments/*.py script runs end to end in quick mode.

Notebooks are executed with nbclient (kernel ``python3`` of this interpreter, cwd ``notebooks/``),
scripts in a subprocess with ``--quick --workdir TMP``. Both get ``JAXCNN_QUICK=1`` and
``JAXCNN_RUNS=TMP`` (see jaxcnn.studies.common), and each run must leave a markdown table and at
least one PNG. New notebooks and scripts are picked up automatically. The shared helpers of
jaxcnn.studies.common are tested here too.
"""

import json
import os
import pathlib
import subprocess
import sys

import ml_collections
import pytest

from jaxcnn.studies import common

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SCRIPTS = sorted(p for p in (ROOT / "experiments").glob("*.py") if not p.name.startswith("_"))


def _outputs(folder: pathlib.Path) -> tuple[list[pathlib.Path], list[pathlib.Path]]:
  return sorted(folder.rglob("*.md")), sorted(folder.rglob("*.png"))


@pytest.fixture
def quick_env(tmp_path, monkeypatch):
  """Quick mode and a temporary runs root for this process and its children."""
  monkeypatch.setenv("JAXCNN_QUICK", "1")
  monkeypatch.setenv("JAXCNN_RUNS", str(tmp_path / "runs"))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  return tmp_path


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_script_runs_quick(script, quick_env):
  workdir = quick_env / "work"
  proc = subprocess.run([sys.executable, str(script), "--quick", "--workdir", str(workdir)],
                        cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
  tables, figures = _outputs(workdir)
  assert tables, f"{script.name} wrote no .md table into {workdir}"
  assert figures, f"{script.name} wrote no .png figure into {workdir}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(notebook, quick_env, monkeypatch):
  import nbclient  # pylint: disable=g-import-not-at-top
  import nbformat  # pylint: disable=g-import-not-at-top

  monkeypatch.delenv("MPLBACKEND", raising=False)  # let the notebook's %matplotlib inline work
  nb = nbformat.read(notebook, as_version=4)
  assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
      f"{notebook.name} is saved with outputs; clear them (CI executes it)")
  client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=600,
                                   resources={"metadata": {"path": str(notebook.parent)}})
  client.execute()  # raises CellExecutionError on the first failing cell
  errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type == "error"]
  assert not errors, errors
  inline = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if "image/png" in o.get("data", {})]
  assert inline, f"{notebook.name} shows no figure inline"
  tables, figures = _outputs(quick_env / "runs")
  assert tables and figures, f"{notebook.name} left no .md table and .png in its run folder"


# ---------------------------------------------------------------------------------------------
# jaxcnn.studies.common


def _config():
  config = ml_collections.ConfigDict()
  config.quick = False
  config.lr = 0.1
  config.steps = 10
  config.act = "relu"
  config.sizes = (4, 8)
  config.model = ml_collections.ConfigDict({"width": 2, "bn": True})
  return config


def test_apply_overrides_parses_to_the_field_type():
  config = common.apply_overrides(_config(), [
      "lr=3e-4", "steps=7", "act=elu(alpha=0.5)", "sizes=[1, 2, 3]", "model.bn=false",
      "model.width=5", "quick=1"])
  assert config.lr == pytest.approx(3e-4) and config.steps == 7
  assert config.act == "elu(alpha=0.5)"
  assert config.sizes == (1, 2, 3)
  assert config.model.bn is False and config.model.width == 5 and config.quick is True


@pytest.mark.parametrize("override, message", [
    ("nope=1", "no field 'nope'"),
    ("model.depth=1", "no field 'depth'"),
    ("steps=abc", "steps"),
    ("model.bn=maybe", "boolean"),
    ("model=3", "section"),
    ("steps", "a.b=value"),
])
def test_apply_overrides_rejects_bad_input(override, message):
  with pytest.raises(ValueError, match=message):
    common.apply_overrides(_config(), [override])


def _write_config(folder: pathlib.Path) -> pathlib.Path:
  path = folder / "toy.py"
  path.write_text("import ml_collections\n\ndef get_config():\n"
                  "  return ml_collections.ConfigDict({'quick': False, 'n': 3, 'name': 'a'})\n")
  return path


def test_load_config_by_path_name_quick_and_env(tmp_path, monkeypatch):
  monkeypatch.delenv("JAXCNN_QUICK", raising=False)
  path = _write_config(tmp_path)
  config = common.load_config(path, overrides=["n=5"])
  assert config.n == 5 and config.quick is False
  assert common.load_config(path, quick=True).quick is True
  monkeypatch.setenv("JAXCNN_QUICK", "1")
  assert common.load_config(path).quick is True
  assert common.load_config(path, quick=False).quick is False
  assert "quick" in common.load_config("backprop")  # bare name: experiments/configs/backprop.py
  with pytest.raises(ValueError, match="Known configs:.*backprop"):
    common.load_config("no_such_study")


def test_new_workdir_and_tables(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXCNN_RUNS", str(tmp_path))
  assert common.new_workdir("s") == str(tmp_path / "s") and (tmp_path / "s").is_dir()
  assert common.new_workdir("s", quick=True) == str(tmp_path / "s_quick")
  table = common.markdown_table([("a|b", 0.123456, None, 3)], ("k", "v|x", "w", "n"))
  assert table.splitlines() == ["| k | v\\|x | w | n |", "|---|---|---|---|",
                                "| a\\|b | 0.1235 |  | 3 |"]
  path = tmp_path / "t.md"
  common.write_table(str(path), [(1, 2.0)], ("a", "b"), title="first")
  common.write_table(str(path), [(3, 4.0)], ("a", "b"), append=True)
  text = path.read_text()
  assert text.startswith("## first\n\n| a | b |") and "| 3 | 4 |" in text and "| 1 | 2 |" in text
  with pytest.raises(ValueError, match="2 cells but there are 3 headers"):
    common.markdown_table([(1, 2)], ("a", "b", "c"))


def test_study_main_in_process(tmp_path, monkeypatch):
  monkeypatch.delenv("JAXCNN_QUICK", raising=False)
  monkeypatch.setenv("JAXCNN_RUNS", str(tmp_path / "runs"))
  path = _write_config(tmp_path)
  seen = {}

  def run(config, workdir):
    seen.update(config=config, workdir=workdir)
    return {}

  assert common.study_main(run, path, ["--quick", "--config.n=9", "--config.name", "b"]) == 0
  assert seen["config"].quick is True and seen["config"].n == 9 and seen["config"].name == "b"
  assert seen["workdir"] == str(tmp_path / "runs" / "toy_quick")
  saved = json.loads((tmp_path / "runs" / "toy_quick" / "config.json").read_text())
  assert saved == {"quick": True, "n": 9, "name": "b"}
  assert common.study_main(run, path, ["--workdir", str(tmp_path / "w")]) == 0
  assert seen["workdir"] == str(tmp_path / "w") and seen["config"].quick is False
  with pytest.raises(ValueError, match="no field 'm'"):
    common.study_main(run, path, ["--config.m=1"])
