"""The public API: names, imports without the heavy packages, docstring examples, jit."""

import chex
import jax
import optax
import pytest
from tree_testing import tree

import stabilizers


def test_public_api_names():
    for name in [
        "ema",
        "periodic",
        "delayed",
        "update_target",
        "lag",
        "schedules",
        "SharedCount",
        "seed_axes",
        "EmaState",
        "PeriodicState",
        "DelayedState",
        "checks",
    ]:
        assert hasattr(stabilizers, name), name
        assert name in stabilizers.__all__
    for name in ["cosine_momentum", "consistency_steps", "consistency_ema", "ict_steps"]:
        assert callable(getattr(stabilizers.schedules, name))
    for name in stabilizers.__all__:
        getattr(stabilizers, name)


def test_library_imports_without_flax_or_gymnax():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('flax', 'gymnax', 'orbax', 'tyro', 'matplotlib'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import stabilizers, jax.numpy as jnp\n"
        "tx = stabilizers.ema(0.5); s = tx.init(jnp.zeros(2))\n"
        "print(stabilizers.update_target(tx, jnp.ones(2), jnp.zeros(2), s)[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "0.5" in out.stdout


@pytest.mark.parametrize(
    "make",
    [
        lambda: stabilizers.ema(0.9),
        lambda: stabilizers.periodic(3),
        lambda: stabilizers.delayed(optax.adam(1e-2), 2),
    ],
    ids=["ema", "periodic", "delayed"],
)
def test_jit_matches_eager_and_compiles_once(make):
    tx = make()
    online, target = tree(jax.random.key(12)), tree(jax.random.key(13))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def jitted(online, target, state):
        return stabilizers.update_target(tx, online, target, state)

    chex.clear_trace_counter()
    s_j = s_e = tx.init(target)
    t_j = t_e = target
    for _ in range(4):
        t_j, s_j = jitted(online, t_j, s_j)
        t_e, s_e = stabilizers.update_target(tx, online, t_e, s_e)
        chex.assert_trees_all_close(t_j, t_e, atol=1e-6)


def test_docstring_examples_run():
    import doctest
    import importlib
    import pkgutil

    failed = 0
    for info in pkgutil.iter_modules(stabilizers.__path__):
        module = importlib.import_module(f"stabilizers.{info.name}")
        failed += doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed
    assert failed == 0
