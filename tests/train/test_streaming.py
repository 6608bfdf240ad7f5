"""Streamed data (imagenette through tfds.testing.mock_data, Grain, 32x32 crops): fit() on it, and
its batches by position and by checkpointed iterator state."""

import json

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from jaxcnn.data import datasets, sources  # noqa: E402
from jaxcnn.train.config import get_config  # noqa: E402
from jaxcnn.train.loop import fit  # noqa: E402


def test_streamed_imagenette_trains_and_evaluates_on_its_validation_split(tmp_path):
  c = get_config()
  c.dataset, c.image_size, c.model.name = "imagenette", 32, "simple_cnn_small"
  c.num_epochs, c.steps_per_epoch, c.batch_size, c.eval_batch_size = 1, 3, 8, 8
  c.preprocessing_examples, c.num_models = 12, 2  # two seeds share the stream
  c.schedule.warmup_epochs, c.progress_bar = 0.0, False
  assert not datasets.info("imagenette").in_memory
  with tfds.testing.mock_data(num_examples=20):
    results = fit(c, tmp_path / "run")
    # The transform is fitted on the first 12 training images (center crops), per channel.
    sample = next(datasets.stream("imagenette", "train", batch_size=12, image_size=32,
                                  train=False))["image"].astype(np.float64)
  records = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  assert len(records) == 1 and records[0]["epoch"] == 1 and records[0]["step"] == 3
  for key in ("train_loss", "val_loss"):
    assert np.isfinite(records[0][key + "_per_model"]).all(), key
  # 20 validation images in batches of 8: the padded last batch's 4 fillers are not counted.
  for accuracy in records[0]["val_accuracy_per_model"]:
    assert accuracy * 20 == pytest.approx(round(accuracy * 20), abs=1e-6)
  assert "test_loss" not in results and results["num_models"] == 2
  saved = np.load(tmp_path / "run" / "preprocessing.npz")
  np.testing.assert_allclose(saved["shift"], sample.mean(axis=(0, 1, 2)), rtol=1e-5)
  np.testing.assert_allclose(saved["scale"], 1 / sample.std(axis=(0, 1, 2)), rtol=1e-4)


def test_imagenette_config_names_a_streamed_dataset_and_a_registered_model():
  import importlib.util
  from pathlib import Path

  from jaxcnn.models import create_model
  path = Path(__file__).resolve().parents[2] / "experiments" / "configs" / "imagenette.py"
  spec = importlib.util.spec_from_file_location("imagenette_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  assert not datasets.info(c.dataset).in_memory
  create_model(c.model.name, num_classes=10)  # a known model name
  assert c.batch_size % 8 == 0 and c.eval_batch_size % 4 == 0  # shards over 8 or 4 GPUs


def _streamed(seed=3):
  return sources.Streamed("imagenette", data_dir=None, image_size=16, seed=seed,
                          eval_batch_size=4)


def test_streamed_batches_resume_by_position_and_by_iterator_state():
  with tfds.testing.mock_data(num_examples=20):
    source = _streamed()
    # An epoch longer than the 20 mock examples (6 batches of 4) runs on into a reshuffled pass.
    uninterrupted = [np.asarray(b["image"]) for b in source.train_batches(None, 1, 0, 6, 4)]
    resumed = [np.asarray(b["image"]) for b in source.train_batches(None, 1, 2, 6, 4)]
    it = source.train_iterator(1, 4)
    for _ in range(3):
      next(it)
    state = it.get_state()
    again = source.train_iterator(1, 4)
    again.set_state(state)
    from_state = [next(again)["image"] for _ in range(3)]
    other_epoch = np.asarray(next(source.train_batches(None, 2, 0, 1, 4))["image"])
    other_seed = np.asarray(next(_streamed(seed=4).train_batches(None, 1, 0, 1, 4))["image"])
  assert len(uninterrupted) == 6 and uninterrupted[0].shape == (4, 16, 16, 3)
  for a, b in zip(uninterrupted[2:], resumed):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(uninterrupted[3:], from_state):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(uninterrupted[0], other_epoch)
  assert not np.array_equal(uninterrupted[0], other_seed)


def test_streamed_eval_batches_are_padded_and_masked():
  with tfds.testing.mock_data(num_examples=10):
    source = _streamed()
    batches = list(source.eval_batches("val"))
    sample = source.sample(7)
    for missing in ("nope", "test"):  # imagenette has no test split
      with pytest.raises(ValueError, match="No split"):
        source.eval_batches(missing)
  assert source.eval_splits == ["val"] and source.input_shape == (16, 16, 3)
  assert [np.asarray(b["mask"]).tolist() for b in batches] == [[1] * 4, [1] * 4, [1, 1, 0, 0]]
  assert sample.shape == (7, 16, 16, 3) and sample.dtype == np.uint8
  np.testing.assert_array_equal(sample[:4], np.asarray(batches[0]["image"]))  # same crops
