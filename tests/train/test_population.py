"""The population trainer and the data sources: stacking equals separate runs, one compile per
shape, the eval schedule, NaN stops, named subsets."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn.data import datasets, sources
from jaxcnn.models import create_model
from jaxcnn.train.optim import make_optimizer
from jaxcnn.train.population import NonFiniteLossError, Population, check_finite
from jaxcnn.train.state import create_train_state
from jaxcnn.train.steps import make_train_step

_SCALE = lambda x: x.astype(jnp.float32) / 16.0  # noqa: E731  (any fixed scale; digits pixels are 0..255)
_SGD = {"name": "sgd", "momentum": 0.9}


@pytest.fixture(scope="module")
def digits():
  return sources.subsets("digits", {"train": 512, "val": 128}, seed=0)


@pytest.fixture(scope="module")
def source(digits):
  return sources.InMemory(digits, eval_batch_size=100)


def _population(num_models, **kwargs):
  model = create_model("simple_cnn_small", num_classes=10)
  return Population(model, make_optimizer(_SGD, 0.05), num_models=num_models, preprocess=_SCALE,
                    **kwargs)


# Populations of one and of two models, shared by the tests: seeds, learning rates and initial
# variables are traced values, so every test reuses the same compiled steps (what
# test_new_traced_values_reuse_the_compiled_step checks).
@pytest.fixture(scope="module")
def pop1():
  return _population(1)


@pytest.fixture(scope="module")
def pop2():
  return _population(2)


def test_population_of_one_is_the_plain_step_bitwise(source, pop1):
  pop = pop1
  state, data_keys = pop.init([7], source.input_shape)
  plain_step = make_train_step(pop.model, pop.tx, preprocess=_SCALE)
  model_key, data_key = jax.random.split(jax.random.PRNGKey(7))
  plain = create_train_state(pop.model, pop.tx, model_key, source.input_shape)
  np.testing.assert_array_equal(np.asarray(data_keys[0]), np.asarray(data_key))
  for step, (state, _) in enumerate(pop.steps(state, data_keys, source, batch_size=64, start=0,
                                               stop=3)):
    order = jax.random.permutation(jax.random.fold_in(data_key, 0), source.num_train)
    ids = order[step * 64:(step + 1) * 64]
    train = source.splits["train"]
    plain, _ = plain_step(plain, {"image": train["image"][ids], "label": train["label"][ids]})
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a)[0], np.asarray(b)),
               state.params, plain.params)


def test_stacked_learning_rates_equal_separate_populations(source, pop1, pop2):
  lrs = [0.01, 0.2]
  pop = pop2
  state, keys = pop.init([3, 3], source.input_shape, hyperparams={"learning_rate": lrs})
  _, both = pop.train(state, keys, source, num_steps=6, batch_size=32, eval_every=3)
  assert both["train_loss"].shape == (6, 2)
  assert both["val_accuracy"].shape == (2, 2)
  np.testing.assert_array_equal(both["eval_steps"], [3, 6])
  for m, lr in enumerate(lrs):
    one = pop1
    state, keys = one.init([3], source.input_shape, hyperparams={"learning_rate": [lr]})
    _, single = one.train(state, keys, source, num_steps=6, batch_size=32, eval_every=3)
    np.testing.assert_allclose(both["train_loss"][:, m], single["train_loss"][:, 0], rtol=1e-5)
    np.testing.assert_allclose(both["val_loss"][:, m], single["val_loss"][:, 0], rtol=1e-5)
  assert abs(both["val_loss"][-1, 0] - both["val_loss"][-1, 1]) > 1e-3


def test_new_traced_values_reuse_the_compiled_step(source, pop2):
  pop = pop2
  state, keys = pop.init([0, 1], source.input_shape, hyperparams={"learning_rate": [0.1, 0.2]})
  state, _ = pop.train(state, keys, source, num_steps=2, batch_size=32)
  first = pop.compile_time_s
  assert first > 0
  # Other seeds, other rates, given initial variables: the same program.
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  state, keys = pop.init([5, 6], source.input_shape, hyperparams={"learning_rate": [1e-3, 0.5]},
                         variables=variables)
  _, history = pop.train(state, keys, source, num_steps=2, batch_size=32)
  assert pop.compile_time_s == first and len(pop._compiled) == 1
  assert np.isfinite(history["train_loss"]).all()


def test_eval_at_start_and_measure_at_every_evaluation(source, pop2):
  pop = pop2
  state, keys = pop.init([0, 1], source.input_shape)
  norms = lambda s: {"head_norm": jnp.sqrt(jnp.sum(s.params["head"]["kernel"] ** 2, axis=(1, 2)))}
  _, history = pop.train(state, keys, source, num_steps=4, batch_size=32, eval_every=2,
                         eval_at_start=True, measure=norms)
  np.testing.assert_array_equal(history["eval_steps"], [0, 2, 4])
  assert history["head_norm"].shape == (3, 2)
  assert not np.allclose(history["head_norm"][0], history["head_norm"][-1])
  # At step 0 the models are at chance level on 10 classes.
  assert np.all(history["val_loss"][0] > 1.5)


def test_evaluate_matches_a_direct_forward_pass(source, digits, pop1):
  pop = pop1
  state, _ = pop.init([4], source.input_shape)
  result = pop.evaluate(state, source, "val")  # 128 examples in batches of 100: one is padded
  variables = {"params": jax.tree.map(lambda x: x[0], state.params),
               "batch_stats": jax.tree.map(lambda x: x[0], state.batch_stats)}
  forward = jax.jit(lambda v, x: pop.model.apply(v, _SCALE(x), train=False))  # not op by op
  logits = forward(variables, jnp.asarray(digits["val"]["image"]))
  labels = digits["val"]["label"]
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  np.testing.assert_allclose(result["loss"][0], loss, rtol=1e-5)
  np.testing.assert_allclose(result["accuracy"][0], np.mean(np.argmax(logits, -1) == labels))


def test_nan_loss_names_the_step_and_model():
  losses = np.array([[0.5, 0.4], [0.3, np.nan], [np.inf, 0.1]])
  with pytest.raises(NonFiniteLossError, match=r"at step 11 \(epoch 2\), model 1 \(b\)"):
    check_finite(losses, 10, ["a", "b"], steps_per_epoch=10)
  check_finite(losses[:1], 0)  # finite: no error


def test_a_diverging_population_stops_with_the_step(source, pop1):
  state, keys = pop1.init([0], source.input_shape, hyperparams={"learning_rate": [1e12]})
  with pytest.raises(NonFiniteLossError, match="at step"):
    pop1.train(state, keys, source, num_steps=8, batch_size=32, eval_every=4)


def test_stop_on_nonfinite_false_records_divergence_and_trains_the_others(source, pop2):
  pop = pop2
  state, keys = pop.init([0, 0], source.input_shape, hyperparams={"learning_rate": [1e12, 0.01]})
  _, hist = pop.train(state, keys, source, num_steps=8, batch_size=32, eval_every=4,
                      stop_on_nonfinite=False)
  assert not np.isfinite(hist["train_loss"][-1, 0]) and not np.isfinite(hist["val_loss"][-1, 0])
  assert np.all(np.isfinite(hist["train_loss"][:, 1])) and np.isfinite(hist["val_loss"][-1, 1])


def test_shared_order_gives_every_model_the_same_batch(digits):
  shared = sources.InMemory(digits, shared_order=True)
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  batch = next(shared.train_batches(keys, 0, 0, 1, 16))
  assert batch["image"].shape == (16, 8, 8, 1)
  own = sources.InMemory(digits)
  per_model = next(own.train_batches(keys, 0, 0, 1, 16))
  assert per_model["image"].shape == (3, 16, 8, 8, 1)
  np.testing.assert_array_equal(per_model["label"][0], batch["label"])
  assert not np.array_equal(per_model["label"][0], per_model["label"][1])
  with pytest.raises(ValueError, match="exceed one pass"):
    next(own.train_batches(keys, 0, 0, 100, 16))


def test_subsets_are_disjoint_deterministic_and_checked():
  a = sources.subsets("digits", {"train": 300, "val": 100, "test": 50}, seed=1)
  b = sources.subsets("digits", {"train": 300, "val": 100, "test": 50}, seed=1)
  full = datasets.load("digits", "train")
  assert {k: len(v["label"]) for k, v in a.items()} == {"train": 300, "val": 100, "test": 50}
  for split in a:
    np.testing.assert_array_equal(a[split]["image"], b[split]["image"])
  # train and val are disjoint rows of the training split: the first 300 and the next 100 of
  # one permutation of its 1,618 rows.
  order = np.random.default_rng(1).permutation(len(full["label"]))
  np.testing.assert_array_equal(a["train"]["image"], full["image"][order[:300]])
  np.testing.assert_array_equal(a["val"]["image"], full["image"][order[300:400]])
  other = sources.subsets("digits", {"train": 300}, seed=2)
  assert not np.array_equal(other["train"]["label"], a["train"]["label"])
  with pytest.raises(ValueError, match="exceeds"):
    sources.subsets("digits", {"train": 1600, "val": 100})
  with pytest.raises(ValueError, match="Unknown splits"):
    sources.subsets("digits", {"validation": 10})
