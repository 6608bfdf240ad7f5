"""The offline default dataset: scikit-learn's handwritten digits as a tfds builder.

``jaxcnn_digits`` holds the 1,797 8x8 digits bundled with scikit-learn (UCI "Optical
Recognition of Handwritten Digits"; 4x4-block counts 0..16 of 32x32 bitmaps), scaled to uint8 as
``round(v * 255 / 16)`` and shaped ``(8, 8, 1)``, 10 classes. It prepares without network
access, so the default run works on any machine. The test split is
``splits.train_val_test_split(1797, val=0, seed=0, labels=target).test`` (the default holdout,
179 examples, stratified); train is the other 1,618.

It prepares and reads without TensorFlow: the images are raw uint8 tensors
(``tfds.features.Tensor``, bytes encoding; an ``Image`` feature would need TensorFlow to encode
PNGs and an image codec to decode each one), written as ArrayRecord and read back with
``as_data_source``. This module imports tensorflow_datasets; :func:`jaxcnn.data.datasets.load`
imports it only when the dataset is asked for. Use it through ``datasets.load("digits")`` or::

  builder = JaxcnnDigits(data_dir=..., file_format="array_record")
  builder.download_and_prepare()          # no download: generates from scikit-learn
  source = builder.as_data_source(split="train")          # source[i]: {"image", "label"}

References: Alpaydin & Kaynak 1998, "Optical Recognition of Handwritten Digits" (UCI ML
repository); https://www.tensorflow.org/datasets/add_dataset (tfds builders).
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from jaxcnn.data import splits

NUM_CLASSES = 10
IMAGE_SHAPE = (8, 8, 1)
MAX_VALUE = 16  # scikit-learn digits are counts of set pixels in 4x4 blocks: 0..16.


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
  """All 1,797 digits in scikit-learn's order: uint8 ``(1797, 8, 8, 1)`` images, int64 labels."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

  digits = load_digits()
  images = np.round(digits.images * (255 / MAX_VALUE)).astype(np.uint8)[..., None]
  return images, digits.target.astype(np.int64)


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
  """Train/test indices into :func:`digits_arrays`: default stratified holdout, seed 0."""
  split = splits.train_val_test_split(len(labels), val=0, seed=0, labels=labels)
  return {"train": split.train, "test": split.test}


class JaxcnnDigits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's 8x8 handwritten digits, prepared offline (tfds name ``jaxcnn_digits``)."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
      "1.0.0": "First release: 1,618 train and 179 test images.",
      "1.1.0": "Same examples as raw uint8 tensors in ArrayRecord files, prepared without TensorFlow.",
  }

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.split("\n\n")[1],
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=IMAGE_SHAPE, dtype=np.uint8,
                                          encoding=tfds.features.Encoding.BYTES),
            "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        }),
        supervised_keys=("image", "label"),
        homepage="https://archive.ics.uci.edu/dataset/80",
        citation="Alpaydin, E. & Kaynak, C. (1998). Optical Recognition of Handwritten Digits. "
                 "UCI Machine Learning Repository.",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the data ships with scikit-learn.
    images, labels = digits_arrays()
    return {name: self._generate_examples(images, labels, indices)
            for name, indices in split_indices(labels).items()}

  def _generate_examples(self, images, labels, indices):
    for i in indices:
      yield int(i), {"image": images[i], "label": int(labels[i])}

