"""The Stage spec shared by MobileNetV2 and EfficientNet: the refactor kept variables and outputs
(a fixture recorded before it), plain tuples convert, bad specs raise.

``fixtures/mbconv_refactor.npz`` was written at commit e1d83ae (before the Stage type) by
initializing the two tiny models below with ``jax.random.key(1)`` on ``input``, perturbing the
normalization variables, storing the variables as float16 and the logits of those variables (as
float32) in eval mode and in train mode with dropout rng ``jax.random.key(3)``.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxcnn.models import create_model
from jaxcnn.models.efficientnet import B0_STAGES, EfficientNet
from jaxcnn.models.mbconv import Stage, as_stages
from jaxcnn.models.mobilenet import V2_STAGES, MobileNetV2, table2_stage

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "mbconv_refactor.npz")
# The models of the fixture, with the plain tuples they were written with then.
MODELS = {
    "v2": MobileNetV2(width=0.35, stages=((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 1)),
                      num_classes=3),
    "b0": EfficientNet(width=0.25, stages=((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2)),
                       num_classes=3),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_variables_and_outputs_unchanged_by_the_refactor(name):
  data = np.load(FIXTURE)
  model, x = MODELS[name], jnp.asarray(data["input"])
  prefix = f"{name}/var/"
  stored = {k[len(prefix):]: jnp.asarray(data[k], jnp.float32) for k in data.files
            if k.startswith(prefix)}
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(1), x, train=False))
  flat = traverse_util.flatten_dict(shapes, sep="/")
  assert sorted(flat) == sorted(stored)  # the same variable tree ...
  assert all(flat[k].shape == stored[k].shape for k in flat)  # ... and shapes
  variables = traverse_util.unflatten_dict(stored, sep="/")
  y_eval, y_train = jax.jit(lambda v: (
      model.apply(v, x, train=False),
      model.apply(v, x, train=True, rngs={"dropout": jax.random.key(3)},
                  mutable=["batch_stats"])[0]))(variables)
  np.testing.assert_allclose(y_eval, data[f"{name}/eval"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(y_train, data[f"{name}/train"], rtol=1e-5, atol=1e-5)


def test_tables_in_the_stage_type():
  # Sandler et al. 2018, Table 2 and Tan & Le 2019, Table 1, read back field by field.
  assert [(s.expansion, s.channels, s.repeats, s.stride) for s in V2_STAGES] == [
      (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
      (6, 320, 1, 1)]
  assert {(s.kernel, s.se_ratio) for s in V2_STAGES} == {(3, 0.0)}
  assert [(s.expansion, s.kernel, s.stride, s.channels, s.repeats) for s in B0_STAGES] == [
      (1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
      (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
  assert {s.se_ratio for s in B0_STAGES} == {0.25}


def test_plain_tuples_and_lists_convert():
  assert MODELS["v2"].stages[1] == Stage(6, 3, 2, 24, 2, 0.0) == table2_stage(6, 24, 2, 2)
  assert MODELS["b0"].stages[2] == Stage(6, 5, 2, 40, 2, 0.25)
  # JSON lists (e.g. pretrained's fixtures), a 6-list as Stage fields, and clone keep Stages.
  model = create_model("efficientnet_b0", stages=[[6, 5, 2, 40, 2], [6, 3, 1, 24, 1, 0.0]])
  assert model.stages == (Stage(6, 5, 2, 40, 2, 0.25), Stage(6, 3, 1, 24, 1, 0.0))
  assert model.clone(num_classes=3).stages == model.stages
  assert hash(model) == hash(create_model("efficientnet_b0", stages=model.stages))
  # MobileNetV2 with B0's stage table (5x5 kernels, squeeze-excite): the spec is shared.
  assert create_model("mobilenet_v2", stages=B0_STAGES).stages == B0_STAGES


@pytest.mark.parametrize("stages,match", [
    (((6, 4, 2, 24, 2),), "kernel must be an odd int >= 1, got 4"),
    (((6, 3, 3, 24, 2),), "stride must be 1 or 2, got 3"),
    (((0.5, 3, 2, 24, 2),), "expansion must be a number >= 1, got 0.5"),
    (((6, 3, 2, 24, 0),), "repeats must be an int >= 1, got 0"),
    (((6, 3, 2, 24, 2, 1.5),), r"se_ratio must be in \[0, 1\), got 1.5"),
    (((6, 3, 2),), r"table row \(expansion, kernel, stride, channels, repeats\); got \(6, 3, 2\)"),
    ((), "non-empty sequence"),
])
def test_bad_stages_raise(stages, match):
  with pytest.raises(ValueError, match=match):
    EfficientNet(stages=stages)


def test_mobilenet_reads_four_tuples_as_table2_rows():
  with pytest.raises(ValueError, match=r"table row \(t, c, n, s\)"):
    as_stages([(6, 3, 2, 24, 2)], table2_stage)
  assert as_stages([(6, 24, 2, 2)], table2_stage) == (Stage(6, 3, 2, 24, 2),)
