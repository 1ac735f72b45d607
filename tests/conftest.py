import gc

import jax
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module.

    Every loaded XLA:CPU executable keeps memory mappings; one process running the whole suite
    kept them all and reached Linux's limit of 65,530 mappings per process (vm.max_map_count),
    after which XLA's next compilation segfaulted (CI, ~93% through the suite).
    """
    yield
    jax.clear_caches()
    gc.collect()
