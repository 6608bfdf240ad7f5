"""Fine-tuning through the training config: torchvision-layout weights in, a new head, a frozen
backbone (experiments/configs/finetune.py)."""

import json
import pathlib

import jax
import numpy as np
import pytest

from jaxcnn.models import pretrained
from jaxcnn.train import checkpoint, loop
from jaxcnn.train.config import get_config

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "models"
safetensors_numpy = pytest.importorskip("safetensors.numpy")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
  """A torchvision ResNet(BasicBlock, [1, 2, 1, 1], num_classes=10) state dict (synthetic
  values, torchvision's names and shapes as recorded by scripts/make_torch_fixtures.py)."""
  import sys  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, str(FIXTURES))
  from torch_reference import synthetic_state_dict  # pylint: disable=g-import-not-at-top
  case = json.loads((FIXTURES / "fixtures" / "torch_cases.json").read_text())["cases"]
  case = case["resnet_basic"]
  path = tmp_path_factory.mktemp("weights") / "resnet18_small.safetensors"
  safetensors_numpy.save_file(synthetic_state_dict(case["state_dict"], seed=0), str(path))
  return path


def _data(seed=0):
  rng = np.random.default_rng(seed)
  split = lambda n: {"image": rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),  # noqa: E731
                     "label": rng.integers(0, 4, n).astype(np.int32)}
  return {"train": split(96), "test": split(32)}


def _config(weights, train):
  c = get_config()
  c.model = c.model.__class__({"name": "resnet18", "stage_sizes": (1, 2, 1, 1)})
  c.init_from.weights = str(weights)
  c.init_from.train = train
  c.preprocessing = "normalize"
  c.val_size = 0
  c.num_epochs, c.batch_size, c.eval_batch_size = 1, 32, 32
  c.schedule.warmup_epochs = 0.0
  c.optimizer.learning_rate = 0.1
  c.progress_bar = False
  return c


def test_head_only_fine_tuning_keeps_the_converted_backbone_and_trains_a_new_head(
    tmp_path, weights, monkeypatch):
  data, config = _data(), _config(weights, "head")
  started = []  # the setup and the initial state of the fit below (copied: the step donates it)
  restore_or_init = loop.restore_or_init

  def recording(s, mngr, *, resume):
    out = restore_or_init(s, mngr, resume=resume)
    started.append((s, jax.tree.map(np.array, out[0])))
    return out

  monkeypatch.setattr(loop, "restore_or_init", recording)
  loop.fit(config, tmp_path / "run", data=data)
  (s, fresh), = started
  assert s.num_classes == 4
  reference = pretrained.convert(
      pretrained.torchvision_model("resnet18", stage_sizes=(1, 2, 1, 1), num_classes=10),
      safetensors_numpy.load_file(str(weights)), input_shape=(1, 16, 16, 3))
  flat = lambda tree: {jax.tree_util.keystr(k): np.asarray(v)  # noqa: E731
                       for k, v in jax.tree_util.tree_leaves_with_path(tree)}
  start, converted = flat(fresh.params), flat(reference["params"])
  head = [k for k in start if k.startswith("['head']")]
  assert head and all(start[k].shape[0] == 1 for k in start)  # a population of one
  assert start["['head']['kernel']"].shape == (1, 512, 4)
  for k, v in converted.items():
    if not k.startswith("['head']"):
      np.testing.assert_array_equal(start[k][0], v, err_msg=k)  # the weights, unchanged

  trained, _ = checkpoint.restore(checkpoint.manager(tmp_path / "run" / "checkpoints"), fresh)
  after = flat(trained.params)
  for k in start:
    if k in head:
      assert not np.array_equal(after[k], start[k]), f"{k} did not train"
    else:
      np.testing.assert_array_equal(after[k], start[k], err_msg=f"{k} is frozen")
  # Batch-norm statistics adapt in training mode even in a frozen backbone.
  bn = "['stage1_block1']['conv1']['BatchNorm_0']['mean']"
  assert not np.array_equal(flat(trained.batch_stats)[bn], flat(fresh.batch_stats)[bn])


def test_bad_init_from_fails_before_any_work(tmp_path, weights):
  with pytest.raises(ValueError, match="init_from.weights=.*no such file"):
    loop.fit(_config(tmp_path / "missing.safetensors", "all"), tmp_path / "run", data=_data())
  with pytest.raises(ValueError, match="train all or head"):
    loop.fit(_config(weights, "backbone"), tmp_path / "run", data=_data())
  assert not (tmp_path / "run").exists()
