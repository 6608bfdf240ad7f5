"""The persistent compilation cache that every jaxcnn command turns on."""

import jax
import jax.numpy as jnp
import pytest

from jaxcnn.train import cache


@pytest.fixture
def restore_cache_config():
  before = jax.config.jax_compilation_cache_dir
  yield
  jax.config.update("jax_compilation_cache_dir", before)


def test_cache_folder_from_argument_env_or_off(tmp_path, monkeypatch, restore_cache_config):
  monkeypatch.delenv(cache.ENV, raising=False)
  assert cache.enable_compilation_cache(tmp_path / "a") == tmp_path / "a"
  assert jax.config.jax_compilation_cache_dir == str(tmp_path / "a")
  assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
  monkeypatch.setenv(cache.ENV, str(tmp_path / "b"))
  assert cache.enable_compilation_cache() == tmp_path / "b" and (tmp_path / "b").is_dir()
  monkeypatch.setenv(cache.ENV, "off")
  assert cache.enable_compilation_cache() is None


def test_a_compiled_program_lands_in_the_cache(tmp_path, monkeypatch, restore_cache_config):
  monkeypatch.delenv(cache.ENV, raising=False)
  cache.enable_compilation_cache(tmp_path)
  from jax._src import compilation_cache as cc  # the cache object is created once per process
  cc.reset_cache()
  jax.jit(lambda x: jnp.sin(x) * 3.0 + 1.25).lower(jnp.ones(7)).compile()
  assert any(tmp_path.iterdir()), "no cache entry written"
  cc.reset_cache()
