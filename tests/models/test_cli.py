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


def test_summary_defaults_to_registered_input_size(capsys):
  # resnet20 is registered at 32x32x3 (CIFAR): the default run is the 32x32 one, not 224x224.
  assert cli.main(["summary", "resnet20"]) == 0
  out = capsys.readouterr().out
  assert "input (1, 32, 32, 3)" in out and "(1, 8, 8, 64)" in out
  # 40.6M MACs at 32x32 (docs/models.md); at 224x224 it would be 49x that.
  assert "Multiply-accumulates per image:  40,551,040 (0.041 G)" in out
  assert cli.main(["summary", "simple_cnn_small"]) == 0
  assert "input (1, 8, 8, 1)" in capsys.readouterr().out  # the digits
  assert cli.main(["summary", "simple_cnn_small", "--input-size", "16", "--channels", "3"]) == 0
  assert "input (1, 16, 16, 3)" in capsys.readouterr().out


def test_summary_unknown_model_lists_known(capsys):
  assert cli.main(["summary", "resnet21"]) == 2
  err = capsys.readouterr().err
  assert "Known models:" in err and "resnet20" in err


def test_summary_batch_size_scales_the_memory_estimate(capsys):
  assert cli.main(["summary", "simple_cnn_small", "--batch-size", "8"]) == 0
  out = capsys.readouterr().out
  assert "Memory estimate at batch size 8" in out
  assert cli.main(["summary", "simple_cnn_small", "--batch-size", "0"]) == 2
  assert "--batch-size must be >= 1" in capsys.readouterr().err
