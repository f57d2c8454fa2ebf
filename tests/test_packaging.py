"""The package's dependencies: the library needs jax and optax only; each package's imports
are covered by its extra."""

import ast
import os
import sys

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# import name -> distribution name, where they differ
DISTRIBUTION = {
    "sklearn": "scikit-learn",
    "dm_pix": "dm-pix",
    "orbax": "orbax-checkpoint",
    "brax": "brax",
}
# which extras a package may rely on, besides the core dependencies
EXTRAS = {
    "stabilizers": [],
    "agents": ["rl", "brax"],
    "generative": ["generative"],
    "representation": ["representation"],
    "datasources": ["generative", "representation"],
    "benchmarks": ["rl", "brax", "generative", "representation", "bench"],
}
FIRST_PARTY = set(EXTRAS)


def _project():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def _names(requirements):
    out = set()
    for req in requirements:
        name = req.split(";")[0].split("[")[0]
        for sep in "<>=!~ ":
            name = name.split(sep)[0]
        out.add(name.strip().lower())
    return out


def _imports(package: str) -> set[str]:
    """Top-level third-party modules imported anywhere in `package` (lazy imports too)."""
    found = set()
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
        for name in files:
            if not name.endswith(".py"):
                continue
            with open(os.path.join(folder, name)) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    found.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    return {m for m in found if m not in stdlib and m not in FIRST_PARTY}


def test_the_library_alone_depends_on_jax_and_optax():
    assert _names(_project()["dependencies"]) == {"jax", "optax"}
    assert _imports("stabilizers") <= {"jax", "optax", "numpy"}  # numpy comes with jax


@pytest.mark.parametrize("package", sorted(EXTRAS))
def test_every_import_of_a_package_is_in_its_extras(package):
    project = _project()
    extras = project["optional-dependencies"]
    allowed = _names(project["dependencies"]) | {"numpy"}
    for extra in EXTRAS[package]:
        allowed |= _names(extras[extra])
    missing = {m for m in _imports(package) if DISTRIBUTION.get(m, m).lower() not in allowed}
    assert not missing, f"{package} imports {sorted(missing)} outside its extras"


def test_all_is_every_extra_and_make_installs_all_and_dev():
    extras = _project()["optional-dependencies"]
    assert extras["all"] == ["stabilizers[rl,brax,generative,representation,bench]"]
    with open(os.path.join(ROOT, "Makefile")) as f:
        assert '".[all,dev]"' in f.read()
