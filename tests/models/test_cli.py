"""`jaxcnn models` and `jaxcnn summary`."""

from jaxcnn import cli
from jaxcnn.models import list_models


def test_models_lists_all_and_filters(capsys):
  assert cli.main(["models"]) == 0
  assert capsys.readouterr().out.split() == list_models()
  assert cli.main(["models", "vgg1?_bn"]) == 0
  assert capsys.readouterr().out.split() == ["vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]


def test_models_without_match_fails(capsys):
  assert cli.main(["models", "nothing*"]) == 1
  assert "no model matches" in capsys.readouterr().err


def test_summary_prints_table_and_totals(capsys):
  assert cli.main(["summary", "resnet20", "--input-size", "32"]) == 0
  out = capsys.readouterr().out
  assert "stage3_block3" in out and "(1, 8, 8, 64)" in out
  assert "Parameters:                      269,722" in out
  assert "Multiply-accumulates per image:" in out


def test_summary_num_classes(capsys):
  assert cli.main(["summary", "resnet20", "--input-size", "32", "--num-classes", "100"]) == 0
  assert "Parameters:                      275,572" in capsys.readouterr().out  # + 64 * 90 + 90


def test_summary_unknown_model(capsys):
  assert cli.main(["summary", "resnet21"]) == 2
  assert "Unknown model 'resnet21'" in capsys.readouterr().err
