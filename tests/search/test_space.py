import jax
import numpy as np
import pytest

from jaxcnn import search

OPS = ("none", "skip_connect", "conv_1x1", "conv_3x3", "avg_pool_3x3")


def make():
  return search.Space({"edge_0": OPS, "edge_1": OPS[:3], "width": (16, 32)})


def test_basic():
  s = make()
  assert len(s) == 3 and s.names == ("edge_0", "edge_1", "width")
  assert s.num_options.dtype == np.int32 and list(s.num_options) == [5, 3, 2]
  assert s.size == 30


def test_round_trip():
  s = make()
  d = {"edge_0": "conv_3x3", "edge_1": "none", "width": 32}
  a = s.encode(d)
  assert a.dtype == np.int32 and list(a) == [3, 0, 1]
  assert s.decode(a) == d
  for arch in np.asarray(s.sample(jax.random.PRNGKey(0), 20)):
    assert list(s.encode(s.decode(arch))) == list(arch)


def test_sample_uniform_and_in_range():
  s = make()
  a = np.asarray(s.sample(jax.random.PRNGKey(1), 3000))
  assert a.shape == (3000, 3) and a.dtype == np.int32
  assert (a >= 0).all() and (a < np.asarray(s.num_options)).all()
  counts = np.bincount(a[:, 0], minlength=5) / 3000
  np.testing.assert_allclose(counts, 0.2, atol=0.04)
  np.testing.assert_array_equal(a, s.sample(jax.random.PRNGKey(1), 3000))


def test_errors_name_the_choice():
  s = make()
  with pytest.raises(ValueError, match="edge_1"):
    s.encode({"edge_0": "none", "edge_1": "conv_3x3", "width": 16})
  with pytest.raises(ValueError, match="Missing choice 'width'"):
    s.encode({"edge_0": "none", "edge_1": "none"})
  with pytest.raises(ValueError, match="Unknown choice 'depth'"):
    s.encode({"edge_0": "none", "edge_1": "none", "width": 16, "depth": 3})
  with pytest.raises(ValueError, match="'width'"):
    s.decode(np.array([0, 0, 2]))
  with pytest.raises(ValueError, match="shape"):
    s.decode(np.array([0, 0]))
  with pytest.raises(ValueError, match="no options"):
    search.Space({"a": ()})
  with pytest.raises(ValueError, match="twice"):
    search.Space({"a": (1, 1)})
  with pytest.raises(TypeError):
    search.Space({"a": "abc"})
  with pytest.raises(ValueError):
    search.Space({})
