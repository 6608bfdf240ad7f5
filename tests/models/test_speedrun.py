"""airbench94 (SpeedrunNet): parameter count, whitening, Dirac init, bias scaling, TTA, recipe."""

import functools
import importlib.util
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.models import count_params, create_model, flops, model_info
from jaxcnn.models import speedrun

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"widths": (8, 16, 16)}


def _images(n=6, size=16, seed=0):
  """Correlated images: smoothed noise, so the patch covariance is far from the identity."""
  x = np.random.default_rng(seed).normal(size=(n, size + 2, size + 2, 3))
  x = (x[:, :-2, :-2] + x[:, 1:-1, 1:-1] + x[:, 2:, 2:]) / 3 + 0.3 * x[:, 1:-1, 1:-1, :1]
  return jnp.asarray(x, jnp.float32)


def _init(model, x, seed=0):
  return jax.jit(model.init)(jax.random.key(seed), x)


def _eval(model):
  return jax.jit(lambda v, x: model.apply(v, x, train=False))


def test_registered_with_metadata():
  info = model_info("airbench94")
  assert info.family == "speedrun" and info.input_size == (32, 32, 3) and info.num_classes == 10


def test_parameter_count_and_macs_match_the_architecture():
  model = create_model("airbench94")
  convs = [(24, 64), (64, 64), (64, 256), (256, 256), (256, 256), (256, 256)]
  expected = 24 + sum(9 * a * b for a, b in convs) + 2 * (64 + 256 + 256) + 256 * 10
  assert count_params(model, (1, 32, 32, 3)) == expected == 1_971_352
  # 31x31 after the 2x2 whitening, then 15x15, 7x7 and 3x3 after each block's pool.
  sides = [31, 15, 15, 7, 7, 3]
  macs = sum(s * s * 9 * a * b for s, (a, b) in zip(sides, convs)) + 256 * 10
  assert flops(model, (1, 32, 32, 3)) == macs


def test_whitening_kernel_whitens_patches():
  x = _images()
  eps = 5e-4
  kernel = np.asarray(speedrun.whitening_kernel(x, patch_size=2, eps=eps))
  assert kernel.shape == (2, 2, 3, 24)
  np.testing.assert_allclose(kernel[..., 12:], -kernel[..., :12])
  # Independent patches and covariance in NumPy.
  win = np.lib.stride_tricks.sliding_window_view(np.asarray(x), (2, 2), axis=(1, 2))
  rows = win.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 12)  # (kh, kw, c) order
  cov = rows.T @ rows / len(rows)
  eigenvalues = np.sort(np.linalg.eigvalsh(cov))[::-1]
  responses = rows @ kernel[..., :12].reshape(12, 12)
  np.testing.assert_allclose(responses.T @ responses / len(rows),
                             np.diag(eigenvalues / (eigenvalues + eps)), atol=2e-4)
  # The whitening convolution of the model computes the same responses.
  model = create_model("airbench94", **SMALL)
  variables = speedrun.set_whitening(_init(model, x), x)
  out = speedrun.Whitening().apply(
      {"params": {"bias": jnp.zeros(24)}, "batch_stats": variables["batch_stats"]["whiten"]},
      x, train=False)
  np.testing.assert_allclose(np.asarray(out)[..., :12].reshape(-1, 12), responses, atol=1e-4)


def test_patch_size_errors():
  with pytest.raises(ValueError, match="patch_size"):
    speedrun.patches(jnp.zeros((1, 4, 4, 3)), 5)
  model = create_model("airbench94", **SMALL)
  variables = jax.eval_shape(model.init, jax.random.key(0), _images(2))
  with pytest.raises(ValueError, match="patch_size or channels"):
    speedrun.set_whitening(variables, _images(2), patch_size=3)


def test_whitening_is_fitted_once_by_training_and_is_not_a_parameter():
  model = create_model("airbench94", **SMALL)
  x, y = _images(seed=1), _images(seed=2)
  variables = _init(model, x)
  assert "kernel" not in variables["params"]["whiten"]
  assert not bool(variables["batch_stats"]["whiten"]["fitted"])
  step = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])[1])
  stats = step(variables, x)["batch_stats"]
  np.testing.assert_allclose(stats["whiten"]["kernel"], speedrun.whitening_kernel(x), rtol=1e-4,
                             atol=1e-4)
  again = step({"params": variables["params"], "batch_stats": stats}, y)["batch_stats"]
  np.testing.assert_array_equal(again["whiten"]["kernel"], stats["whiten"]["kernel"])
  preset = speedrun.set_whitening(variables, y)
  kept = step(preset, x)["batch_stats"]
  np.testing.assert_array_equal(kept["whiten"]["kernel"], preset["batch_stats"]["whiten"]["kernel"])


def test_dirac_init_and_scale_free_norm():
  model = create_model("airbench94", widths=(32, 64, 64))
  params = _init(model, _images(2))["params"]
  for block, cin in (("block0", 24), ("block1", 32)):
    kernel = np.asarray(params[block]["conv0"]["kernel"])
    ident = np.zeros((3, 3, cin, cin))
    ident[1, 1] = np.eye(cin)
    np.testing.assert_array_equal(kernel[..., :cin], ident)
    rest = kernel[..., cin:]
    bound = 1 / math.sqrt(9 * cin)  # PyTorch's default uniform init
    assert rest.std() > 0 and np.abs(rest).max() <= bound
    assert sorted(params[block]) == ["conv0", "conv1", "norm0_bias", "norm1_bias"]
  thin = speedrun.partial_dirac(jax.nn.initializers.ones)(jax.random.key(0), (3, 3, 8, 4))
  expected = np.zeros((3, 3, 8, 4))
  expected[1, 1, :4] = np.eye(4)
  np.testing.assert_array_equal(thin, expected)  # out < in: the identity on the first 4 inputs


def test_bias_scale_is_a_learning_rate_multiplier_under_sgd():
  x = _images(4)
  labels = jnp.arange(4) % 10
  a = create_model("airbench94", bias_lr_scale=64.0, **SMALL)
  b = create_model("airbench94", bias_lr_scale=1.0, **SMALL)
  va = _init(a, x)
  va["params"]["block1"]["norm0_bias"] = jnp.linspace(-0.1, 0.1, 16)
  vb = jax.tree.map(lambda t: t, va)
  vb["params"]["block1"]["norm0_bias"] = 8.0 * va["params"]["block1"]["norm0_bias"]

  @functools.partial(jax.jit, static_argnums=1)
  def loss_and_grad(params, model, v):
    def loss(params):
      logits, _ = model.apply({"params": params, "batch_stats": v["batch_stats"]}, x, train=True,
                              mutable=["batch_stats"])
      return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels])
    return jax.value_and_grad(loss)(params)

  la, ga = loss_and_grad(va["params"], a, va)
  lb, gb = loss_and_grad(vb["params"], b, vb)
  np.testing.assert_allclose(la, lb, rtol=1e-5)
  # theta = b / 8: d loss / d theta = 8 d loss / d b, so an SGD step on theta moves b by 64x.
  np.testing.assert_allclose(ga["block1"]["norm0_bias"], 8.0 * gb["block1"]["norm0_bias"],
                             rtol=1e-4, atol=1e-7)


def test_test_time_augmentation():
  x = _images(3)
  plain = create_model("airbench94", tta="none", **SMALL)
  variables = speedrun.set_whitening(_init(plain, x), x)
  apply = _eval(plain)
  net = lambda images: np.asarray(apply(variables, images))  # noqa: E731
  flip = lambda images: images[:, :, ::-1]  # noqa: E731
  mirror = lambda images: (net(images) + net(flip(images))) / 2  # noqa: E731
  got = _eval(create_model("airbench94", tta="flip", **SMALL))(variables, x)
  np.testing.assert_allclose(got, mirror(x), rtol=1e-5, atol=1e-6)
  padded = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
  expected = 0.5 * mirror(x) + 0.25 * mirror(padded[:, :16, :16]) + 0.25 * mirror(padded[:, 2:, 2:])
  got = _eval(create_model("airbench94", **SMALL))(variables, x)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="Unknown tta"):
    create_model("airbench94", tta="mirror", **SMALL).apply(variables, x, train=False)


def test_jit_vmap_and_bfloat16():
  model = create_model("airbench94", **SMALL)
  x = _images(4)
  keys = jax.random.split(jax.random.key(0), 2)
  variables = jax.jit(jax.vmap(lambda k: model.init(k, x)))(keys)
  out = jax.jit(jax.vmap(lambda v: model.apply(v, x, train=False)))(variables)
  assert out.shape == (2, 4, 10) and np.isfinite(np.asarray(out)).all()
  # bfloat16 parameters and inputs, float32 statistics (the train step's mixed precision).
  bf = {"params": jax.tree.map(lambda a: a.astype(jnp.bfloat16), variables["params"]),
        "batch_stats": variables["batch_stats"]}
  out = jax.jit(jax.vmap(lambda v: model.apply(v, x.astype(jnp.bfloat16), train=True,
                                                mutable=["batch_stats"])[0]))(bf)
  assert out.dtype == jnp.bfloat16 and np.isfinite(np.asarray(out, np.float32)).all()


def _config_module():
  spec = importlib.util.spec_from_file_location(
      "cifar10_speedrun", ROOT / "experiments" / "configs" / "cifar10_speedrun.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_recipe_and_schedule():
  config = _config_module()
  recipe = config.RECIPE
  # airbench94's PyTorch update (sum loss, lr / weight_decay per its kilostep scale) for the mean.
  scale = 1024 * (1 + 1 / (1 - 0.85))
  lr, wd = 11.5 / scale, 0.0153 * 1024 / scale
  assert recipe["learning_rate"] == pytest.approx(lr * 1024) == pytest.approx(1.5)
  assert recipe["weight_decay"] * recipe["learning_rate"] == pytest.approx(wd)
  multiplier = config.schedule(100)
  # airbench94's get_lr: 0.2 -> 1 over int(0.23 * steps), then 1 -> 0.07 at the last step.
  by_hand = [0.2, 0.2 * (1 - 10 / 23) + 10 / 23, 1.0, (1 - 37 / 77) + 0.07 * 37 / 77, 0.07]
  np.testing.assert_allclose([float(multiplier(t)) for t in (0, 10, 23, 60, 100)], by_hand,
                             rtol=1e-6)
  with pytest.raises(ValueError, match="total_steps"):
    config.schedule(0)


def test_train_config_builds_the_default_model():
  pytest.importorskip("ml_collections")
  cfg = _config_module().get_config()
  overrides = dict(cfg.model)
  a = create_model(overrides.pop("name"), **overrides, **SMALL)
  b = create_model("airbench94", **SMALL)
  x = _images(2)
  va, vb = _init(a, x, 1), _init(b, x, 1)
  assert jax.tree.all(jax.tree.map(lambda p, q: bool((p == q).all()), va, vb))
  np.testing.assert_array_equal(_eval(a)(va, x), _eval(b)(vb, x))
  assert cfg.batch_size == 1024 and cfg.label_smoothing == 0.2
  from jaxcnn.train.loop import check_config  # pylint: disable=g-import-not-at-top
  check_config(cfg)  # a config jaxcnn train accepts: the linear schedule, lookahead every 5
  assert cfg.lookahead.every == 5 and cfg.schedule.name == "linear"
