"""What every registered algorithm's config declares: its choices as `Literal`s, and which
fields only set the run's length (`RUN_LENGTH_FIELDS`), checked on the traced programs."""

from __future__ import annotations

import dataclasses
import typing

import jax
import numpy as np
import pytest

from benchmarks import algorithm
from benchmarks.harness import checkpoints

NAMES = sorted(algorithm.registry())
MODULES = sorted({target.partition(":")[0] for target in algorithm.registry().values()})


def string_fields(cls: type, prefix: str = "") -> dict[str, typing.Any]:
    """`{dotted name: type}` of the str and Literal fields of a config class, nested
    dataclasses (data sets, augmentations) included."""
    out = {}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint, name = hints[field.name], prefix + field.name
        if dataclasses.is_dataclass(hint):
            out.update(string_fields(hint, name + "."))
        elif hint is str or typing.get_origin(hint) is typing.Literal:
            out[name] = hint
    return out


def value(config, dotted: str):
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


@pytest.mark.parametrize("name", NAMES)
def test_choices_are_literals_and_every_preset_picks_one(name):
    entry = algorithm.load(name)
    fields = string_fields(entry.module.Config)
    free = {f for f, hint in fields.items() if hint is str}
    assert {f.rsplit(".", 1)[-1] for f in free} <= set(algorithm.FREE_TEXT), (
        f"{name}: {sorted(free)} are plain str; a choice is a Literal, free text is listed "
        "in benchmarks.algorithm.FREE_TEXT"
    )
    for preset, config in {"default": entry.module.Config(), **entry.module.PRESETS}.items():
        for field, hint in fields.items():
            if hint is not str:
                assert value(config, field) in typing.get_args(hint), (name, preset, field)


def test_literal_choices_match_the_checks_behind_them():
    from generative import consistency, data, networks
    from representation import data as ssl_data
    from representation import moco

    hints = typing.get_type_hints(consistency.Config)
    assert typing.get_args(hints["data"]) == data.TOYS + data.IMAGES
    assert typing.get_args(hints["embedding"]) == networks.EMBEDDINGS
    assert moco.VERSIONS == ("v2", "v3") and ssl_data.NAMES[0] == "cluttered_mnist"


def traced(module, config) -> list:
    """The jaxprs (and their constants) of `init`, `step` and `evaluate` on abstract values."""
    key = jax.random.key(0)
    state = jax.eval_shape(module.init, key, config)
    out = []
    for fn, args in (
        (module.init, (key, config)),
        (module.step, (state, config)),
        (module.evaluate, (state, config, key)),
    ):
        closed = jax.make_jaxpr(fn)(*args)
        consts = [np.asarray(checkpoints.unwrap_keys(c)) for c in closed.consts]
        out.append((str(closed.jaxpr), consts))
    return out


def same(a: list, b: list) -> bool:
    return all(
        ja == jb
        and len(ca) == len(cb)
        and all(np.array_equal(x, y) for x, y in zip(ca, cb, strict=True))
        for (ja, ca), (jb, cb) in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("path", MODULES)
def test_run_length_fields_change_no_program_and_total_steps_is_declared(path):
    """A field of `RUN_LENGTH_FIELDS` leaves `init`, `step` and `evaluate` the same programs
    when doubled (so a longer run continues the same one); a `total_steps` left out of it
    changes them (its schedules span the run)."""
    module = algorithm.load(path, {path: path}).module
    config = module.PRESETS["smoke"]
    listed = getattr(module, "RUN_LENGTH_FIELDS", ())
    names = {f.name for f in dataclasses.fields(config)}
    assert set(listed) <= names
    if not listed and "total_steps" not in names:
        pytest.skip("no run-length field")
    base = traced(module, config)
    for field in listed:
        longer = dataclasses.replace(config, **{field: 2 * getattr(config, field)})
        assert same(base, traced(module, longer)), f"{path}: {field} changes the programs"
    if "total_steps" in names and "total_steps" not in listed:
        longer = dataclasses.replace(config, total_steps=2 * config.total_steps)
        assert not same(base, traced(module, longer)), (
            f"{path}: total_steps changes no program; list it in RUN_LENGTH_FIELDS"
        )
