"""The README's main job: `jaxcnn train` with the default config beats 95% on the digits test set."""

import json

from jaxcnn.train import cli


def test_default_config_reaches_95_percent(tmp_path, capsys):
  workdir = tmp_path / "default"
  assert cli.main(["--workdir", str(workdir), "--config.progress_bar=False"]) == 0
  results = json.loads((workdir / "results.json").read_text())
  assert results["test_accuracy"] > 0.95
  config = json.loads((workdir / "config.json").read_text())
  assert config["dataset"] == "digits" and config["model"]["name"] == "simple_cnn"
  assert f"Final test accuracy: {results['test_accuracy']:.4f}" in capsys.readouterr().out
