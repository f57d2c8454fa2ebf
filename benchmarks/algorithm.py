"""The algorithm contract as code: the `Algorithm` protocol and the registry that finds one.

An algorithm is a module with

- `Config`: a frozen `flax.struct.dataclass`; sizes, counts and choices are static fields
  (`pytree_node=False`), float hyperparameters are pytree leaves (the harness vmaps a
  sweep over them). A choice among fixed values is a `typing.Literal` field, so that the
  command line lists the values and rejects others; a plain `str` field holds free text
  only (`FREE_TEXT`: an environment id, a path);
- `init(key, config) -> state`;
- `step(state, config) -> (state, metrics)`: one training iteration, pure and jit-able;
  `metrics` is a dict of scalars, all finite while training is healthy;
- `evaluate(state, config, key) -> metrics`: a dict of scalars;
- `units(config) -> (name, count)`: what one iteration consumes, e.g. `("env_steps", 4)`;
- `PRESETS: dict[str, Config]`: its named configs; `PRESETS["smoke"]` is a run of a few
  seconds on a CPU;
- optionally `RUN_LENGTH_FIELDS: tuple[str, ...]`: the config fields that only set how
  long a run is (DQN's `total_steps`: its schedules count env steps). A run resumed with
  other values of these fields extends (or continues) the checkpointed one; any other
  difference, such as the `total_steps` that a cosine schedule spans, makes it another
  run, which the harness refuses to resume. Absent: no such field.

`benchmarks/toy.py` is the template. The families (`agents`, `generative`,
`representation`) never import `benchmarks`, so the protocol checks them from outside:
each family lists its algorithms in `ALGORITHMS`, a dict from name to `"module.path"` or
`"module.path:preset"` (a preset that is a well-known algorithm of its own, e.g.
`"ddpg": "agents.td3:ddpg"`). `registry()` merges those with `BUILTIN`; `load(name)` imports
the chosen module only, so a family whose dependencies are missing does not stop another.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

FAMILIES = ("agents", "generative", "representation")
"""The packages whose `ALGORITHMS` registries `registry()` merges."""

BUILTIN = {"toy": "benchmarks.toy", "baird": "benchmarks.baird"}
"""Algorithms registered here rather than in a family."""


@runtime_checkable
class Algorithm(Protocol):
    """The shape of an algorithm module (see the module docstring)."""

    Config: type
    PRESETS: Mapping[str, Any]

    def init(self, key: Any, config: Any) -> Any: ...

    def step(self, state: Any, config: Any) -> tuple[Any, Mapping[str, Any]]: ...

    def evaluate(self, state: Any, config: Any, key: Any) -> Mapping[str, Any]: ...

    def units(self, config: Any) -> tuple[str, int]: ...


MEMBERS = ("Config", "init", "step", "evaluate", "units", "PRESETS")
"""What `Algorithm` asks of a module, in the order the contract lists it."""

FREE_TEXT = ("env", "data_dir", "data_path", "root")
"""The `str` config fields that hold free text (an environment id, paths); every other
string field of a registered algorithm's config is a `typing.Literal` of its choices."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """A registered algorithm, imported.

    Attributes:
      name: the registered name (results and checkpoints are labelled with it).
      module: the algorithm module.
      preset: the preset a `"module.path:preset"` entry names, else None.
      config: the default config: `module.PRESETS[preset]`, or `module.Config()`.
    """

    name: str
    module: ModuleType
    preset: str | None
    config: Any


def check(module: Any, label: str | None = None) -> None:
    """Raises a `TypeError` saying how `module` falls short of `Algorithm`.

    Args:
      module: the module (or any object) to check.
      label: how to name it in the message (default: its `__name__`).
    """
    label = label or getattr(module, "__name__", repr(module))
    missing = [m for m in MEMBERS if not hasattr(module, m)]
    if missing:
        raise TypeError(
            f"{label} is not an algorithm: it lacks {', '.join(missing)} "
            f"(an algorithm module has {', '.join(MEMBERS)}; see benchmarks.algorithm)"
        )
    not_callable = [
        m for m in ("init", "step", "evaluate", "units") if not callable(getattr(module, m))
    ]
    if not_callable:
        raise TypeError(f"{label}: {', '.join(not_callable)} must be functions")
    if not (isinstance(module.Config, type) and dataclasses.is_dataclass(module.Config)):
        raise TypeError(f"{label}.Config must be a dataclass (flax.struct.dataclass)")
    if not isinstance(module.PRESETS, Mapping) or "smoke" not in module.PRESETS:
        raise TypeError(f'{label}.PRESETS must be a dict of Configs with a "smoke" entry')
    wrong = [k for k, v in module.PRESETS.items() if not isinstance(v, module.Config)]
    if wrong:
        raise TypeError(f"{label}.PRESETS: {', '.join(map(repr, wrong))} are not {label}.Config")
    fields = {f.name for f in dataclasses.fields(module.Config)}
    run_length = getattr(module, "RUN_LENGTH_FIELDS", ())
    if not isinstance(run_length, tuple) or not set(run_length) <= fields:
        raise TypeError(f"{label}.RUN_LENGTH_FIELDS must be a tuple of {label}.Config fields")


def registry() -> dict[str, str]:
    """Every registered algorithm: name -> `"module.path"` or `"module.path:preset"`.

    Imports each family's package (its `__init__` only, not its algorithms).

    Raises:
      ValueError: a name is registered twice.
    """
    merged = dict(BUILTIN)
    for family in FAMILIES:
        for name, target in _import(family, f"the {family} family").ALGORITHMS.items():
            if name in merged:
                raise ValueError(
                    f"algorithm {name!r} is registered twice: {merged[name]!r} and {target!r}"
                )
            merged[name] = target
    return merged


def load(name: str, registered: Mapping[str, str] | None = None) -> Entry:
    """Imports the algorithm registered as `name` and checks it against `Algorithm`.

    Args:
      name: a registered name (`registry()`).
      registered: the registry to read (default: `registry()`).

    Returns:
      An `Entry`.

    Raises:
      ValueError: `name` is not registered (the message lists the registered names), or
        its preset does not exist.
      ModuleNotFoundError: a package the algorithm needs is not installed (named).
      TypeError: the module does not have the algorithm's shape.
    """
    registered = registry() if registered is None else registered
    if name not in registered:
        raise ValueError(f"unknown algorithm {name!r}; registered: {', '.join(sorted(registered))}")
    path, _, preset = registered[name].partition(":")
    module = _import(path, f"algorithm {name!r}")
    check(module, path)
    if preset and preset not in module.PRESETS:
        raise ValueError(
            f"algorithm {name!r} is registered as {registered[name]!r}, but {path}.PRESETS "
            f"has no {preset!r}; it has {sorted(module.PRESETS)}"
        )
    config = module.PRESETS[preset] if preset else module.Config()
    return Entry(name=name, module=module, preset=preset or None, config=config)


def _import(path: str, what: str) -> ModuleType:
    """`importlib.import_module(path)`, naming the missing package when one is missing."""
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as e:
        missing = e.name or "?"
        if path == missing or path.startswith(missing + "."):
            raise ModuleNotFoundError(
                f"{what} is registered as {path!r}, which does not exist", name=missing
            ) from e
        raise ModuleNotFoundError(
            f"{what} ({path}) needs the package {missing!r}, which is not installed; "
            "install the project's dependencies (pip install -e .)",
            name=missing,
        ) from e
