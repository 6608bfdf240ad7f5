"""Every notebook and every experiments/*.py script runs end to end in quick mode.

Notebooks are executed with nbclient (kernel ``python3`` of this interpreter, cwd ``notebooks/``;
they run their quick setting by default), scripts in a subprocess with ``--quick --workdir TMP``
(plus one override of a field the quick setting sets, which must win). Both get
``JAXCNN_RUNS=TMP`` (see jaxcnn.studies.common), and each run must leave a markdown table and at
least one PNG. New notebooks and scripts are picked up automatically. The shared helpers of
jaxcnn.studies.common and the config argument parser are tested here too.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from jaxcnn.studies import common
from jaxcnn.train import cli as train_cli
from jaxcnn.train.config import config_args

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SCRIPTS = sorted(p for p in (ROOT / "experiments").glob("*.py") if not p.name.startswith("_"))


def _outputs(folder: pathlib.Path) -> tuple[list[pathlib.Path], list[pathlib.Path]]:
  return sorted(folder.rglob("*.md")), sorted(folder.rglob("*.png"))


# One override per script of a field its quick setting sets: applied after get_config("quick"),
# it must be what config.json records (and it keeps the run as small).
OVERRIDES = {
    "activations.py": ("num_steps", 30),
    "architectures.py": ("steps_per_epoch", 6),
    "backprop.py": ("dpi", 50),
    "batchnorm.py": ("init.depth", 8),
    "initialization.py": ("symmetry.num_steps", 15),
    "nas.py": ("num_seeds", 20),
    "preprocessing.py": ("num_steps", 100),
    "zoo_table.py": ("throughput_seconds", 1.0),
}


def _get(config: dict, key: str):
  for part in key.split("."):
    config = config[part]
  return config


@pytest.fixture
def quick_env(tmp_path, monkeypatch):
  """A temporary runs root for this process and its children."""
  monkeypatch.setenv("JAXCNN_RUNS", str(tmp_path / "runs"))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  return tmp_path


# -m slow: scripts whose quick run takes minutes on 2 CPU cores (compiling EfficientNets), and
# those whose study's run is already in the fast suite, through its notebook or its own test in
# tests/studies/ (the script adds only study_main's command line, which backprop.py's run here
# and the command-line tests below cover).
SLOW_SCRIPTS = {"scaling.py", "activations.py", "architectures.py", "batchnorm.py",
                "initialization.py", "preprocessing.py", "nas.py", "zoo_table.py"}
# -m slow: notebooks whose quick run takes over a minute (08: compiling six EfficientNets).
SLOW_NOTEBOOKS = {"08_scaling.ipynb"}


@pytest.mark.parametrize("script", [
    pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW_SCRIPTS else p for p in SCRIPTS],
    ids=[p.name for p in SCRIPTS])
def test_script_runs_quick(script, quick_env):
  workdir = quick_env / "work"
  key, value = OVERRIDES.get(script.name, (None, None))
  override = [f"--config.{key}={value}"] if key else []
  proc = subprocess.run([sys.executable, str(script), "--quick", *override, "--workdir",
                         str(workdir)], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["quick"] is True
  if key:
    assert _get(saved, key) == value, f"--config.{key}={value} did not reach config.json"
  tables, figures = _outputs(workdir)
  assert tables, f"{script.name} wrote no .md table into {workdir}"
  assert figures, f"{script.name} wrote no .png figure into {workdir}"


@pytest.mark.parametrize("notebook", [
    pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW_NOTEBOOKS else p for p in NOTEBOOKS],
    ids=[p.name for p in NOTEBOOKS])
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
# The command line of a study script (subprocess: what a user sees).


def test_script_override_after_quick_and_one_line_errors(tmp_path):
  """An unknown key, a bad value or a bad config argument exits 2 with one line naming it, before
  anything is written."""
  script = ROOT / "experiments" / "activations.py"

  def run(*args):
    return subprocess.run([sys.executable, str(script), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"})

  for args, needle in ((["--quick", "--config.no_such_field=1"], "'no_such_field'"),
                       (["--quick", "--config.model.nope=2"], "'model.nope'"),
                       (["--quick", "--config.num_steps=seven"], "num_steps=seven"),
                       ([f"--config={ROOT}/experiments/configs/activations.py:quik"], "'quik'")):
    proc = run(*args, "--workdir", str(tmp_path / "bad"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert not (tmp_path / "bad").exists()


def test_study_script_quick_then_override_in_config_json(tmp_path, monkeypatch):
  """The real activations config, through study_main: quick setting, then the override."""
  from jaxcnn.studies import activations  # pylint: disable=g-import-not-at-top

  seen = {}
  monkeypatch.setattr(activations, "run", lambda config, workdir: seen.setdefault("c", config))
  path = ROOT / "experiments" / "configs" / "activations.py"
  assert common.study_main(activations.run, path, [
      "--quick", "--config.num_steps=7", "--workdir", str(tmp_path / "a")]) == 0
  saved = json.loads((tmp_path / "a" / "config.json").read_text())
  assert saved["num_steps"] == 7 and saved["quick"] is True and saved["dataset"] == "digits"
  assert common.study_main(activations.run, path, [
      "--config", f"{path}:quick", "--workdir", str(tmp_path / "b")]) == 0
  saved = json.loads((tmp_path / "b" / "config.json").read_text())
  assert saved["num_steps"] == 40 and saved["quick"] is True
  assert common.study_main(activations.run, path, ["--workdir", str(tmp_path / "c")]) == 0
  saved = json.loads((tmp_path / "c" / "config.json").read_text())
  assert saved["num_steps"] == 400 and saved["quick"] is False and saved["dataset"] == "mnist"


# ---------------------------------------------------------------------------------------------
# jaxcnn.studies.common and jaxcnn.train.config.config_args


def test_config_args():
  assert config_args(None, quick=False).quick is False
  assert config_args("", quick=False).quick is False
  assert config_args("quick", quick=False).quick is True
  assert config_args("quick=True", quick=False).quick is True
  assert config_args("quick=0", quick=True).quick is False
  a = config_args("quick, seeds=3,name=b", quick=False, seeds=1, name="a", lr=0.1)
  assert (a.quick, a.seeds, a.name, a.lr) == (True, 3, "b", 0.1)
  with pytest.raises(ValueError, match="Unknown config argument 'quik'.*known: quick"):
    config_args("quik", quick=False)
  with pytest.raises(ValueError, match="true or false"):
    config_args("quick=maybe", quick=False)
  with pytest.raises(ValueError, match="must be a int"):
    config_args("seeds=x", seeds=1)
  with pytest.raises(ValueError, match="needs a value"):
    config_args("seeds", seeds=1)


def _write_config(folder: pathlib.Path) -> pathlib.Path:
  path = folder / "toy.py"
  path.write_text(
      "import ml_collections\nfrom jaxcnn.train.config import config_args\n\n"
      "def get_config(arg=None):\n"
      "  arg = config_args(arg, quick=False)\n"
      "  config = ml_collections.ConfigDict({'quick': arg.quick, 'n': 3, 'name': 'a',\n"
      "                                      'model': {'width': 2}})\n"
      "  if arg.quick:\n"
      "    config.n = 40\n"
      "  return config\n")
  return path


def test_load_config_by_path_and_arg(tmp_path, monkeypatch):
  path = _write_config(tmp_path)
  config = common.load_config(path)
  assert config.n == 3 and config.quick is False
  quick = common.load_config(str(path), "quick")
  assert quick.n == 40 and quick.quick is True
  quick.n = 5  # unlocked: a notebook sets fields directly
  monkeypatch.chdir(tmp_path)
  assert common.load_config("toy.py").n == 3  # relative to the working directory
  with pytest.raises(FileNotFoundError, match="no_such.py"):
    common.load_config("no_such.py")


def test_library_reads_no_experiments_folder():
  for module in (common, train_cli):
    text = pathlib.Path(module.__file__).read_text()
    assert "experiments\" /" not in text and '"experiments"' not in text, module.__name__
  assert train_cli.DEFAULT_CONFIG.is_file() and train_cli.DEFAULT_CONFIG.parent.name == "train"


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


def test_study_main_in_process(tmp_path, monkeypatch, capsys):
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
  assert saved == {"quick": True, "n": 9, "name": "b", "model": {"width": 2}}
  assert common.study_main(run, path, ["--workdir", str(tmp_path / "w")]) == 0
  assert seen["workdir"] == str(tmp_path / "w") and seen["config"].quick is False
  assert seen["config"].n == 3
  assert common.study_main(run, path, ["--config", f"{path}:quick", "--config.model.width=4"]) == 0
  assert seen["config"].n == 40 and seen["config"].model.width == 4
  assert seen["workdir"] == str(tmp_path / "runs" / "toy_quick")
  capsys.readouterr()
  for argv, needle in ((["--config.m=1"], "'m'"), (["--config.model.depth=1"], "'model.depth'"),
                       (["--config.n=abc"], "--config.n=abc"), (["--bogus"], "bogus"),
                       ([f"--config={path}:quik"], "quik"),
                       ([f"--config={tmp_path}/none.py"], "none.py")):
    assert common.study_main(run, path, argv) == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], (argv, err)
