"""A run's orbax checkpoints: the grid's state beside the meta that says which run it is.

The meta (format version, algorithm name, config, seeds, sweep, segment length) must match
for a run to resume from a checkpoint; `iterations` may grow, and so may the config fields
an algorithm lists in `RUN_LENGTH_FIELDS` (fields that only set how long a run is).

A checkpoint that does not restore (a data file cut short by a full disk or a crash during
a copy) is skipped for the newest one that does, and moved out of the way to
`OUT/skipped_checkpoints/` so that it counts neither as the latest nor as one of the kept.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

COMPATIBLE = ("format_version", "algo", "config", "seeds", "sweep", "segment_length")
"""The meta fields a resumed run must share with the checkpoint it resumes from."""

SKIPPED = "skipped_checkpoints"
"""The folder of `out_dir` that checkpoints which do not restore are moved to."""


class Incompatible(ValueError):
    """The checkpoints in a run's folder belong to another run."""


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def unwrap_keys(tree: Any) -> Any:
    """`tree` with every typed PRNG key replaced by its raw key data (storable)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def rewrap_keys(tree: Any, template: Any) -> Any:
    """Undoes `unwrap_keys`: key data back to typed keys wherever `template` holds keys."""
    return jax.tree.map(
        lambda x, t: jax.random.wrap_key_data(x, impl=jax.random.key_impl(t)) if _is_key(t) else x,
        tree,
        template,
    )


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}` (leaves: anything but a dict)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def differences(saved: dict, meta: dict, run_length_fields: Sequence[str] = ()) -> list[str]:
    """What differs between a checkpoint's meta and a run's, as `"name: saved -> run's"`.

    Config fields are named by their (dotted) field name; those in `run_length_fields`
    may differ.
    """
    out = []
    for field in COMPATIBLE:
        old, new = saved.get(field), meta[field]
        if field == "config" and isinstance(old, dict) and isinstance(new, dict):
            old_flat, new_flat = _flat(old), _flat(new)
            for name in sorted(set(old_flat) | set(new_flat)):
                if name in run_length_fields:
                    continue
                a, b = old_flat.get(name, "(absent)"), new_flat.get(name, "(absent)")
                if a != b:
                    out.append(f"{name}: {a!r} -> {b!r}")
        elif old != new:
            out.append(f"{field}: {old!r} -> {new!r}")
    return out


def check_compatible(
    saved: dict, meta: dict, out_dir: str, run_length_fields: Sequence[str] = ()
) -> None:
    """Raises `Incompatible`, in one line naming what differs, unless `saved` (a
    checkpoint's meta) belongs to the run `meta` describes."""
    diff = differences(saved, meta, run_length_fields)
    if not diff:
        return
    note = ""
    if any(d.startswith("total_steps:") for d in diff):
        note = (
            " (total_steps is not one of the algorithm's RUN_LENGTH_FIELDS: its schedules "
            "depend on the run's length, so a longer run is another run)"
        )
    raise Incompatible(
        f"{out_dir} holds another run: {'; '.join(diff)}{note}; use another output folder "
        "or start over (resume=False, --no-resume)"
    )


def _collect_aborted_reads() -> None:
    """Collects what an aborted restore left behind, without its noise.

    A restore that fails mid-read leaves orbax's pending reads to the garbage collector,
    whose clean-up may run after their event loop closed and print "Exception ignored ...
    RuntimeError: Event loop is closed" tracebacks at a random later moment. Collecting them
    here, with exactly that error dropped, keeps the skip to its one line."""

    def hook(unraisable, previous=sys.unraisablehook):
        error = unraisable.exc_value
        if not (isinstance(error, RuntimeError) and "Event loop is closed" in str(error)):
            previous(unraisable)

    previous, sys.unraisablehook = sys.unraisablehook, hook
    try:
        gc.collect()
    finally:
        sys.unraisablehook = previous


def _one_line(error: BaseException, limit: int = 240) -> str:
    text = " ".join(str(error).split()) or "no message"
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}"


class Checkpoints:
    """The checkpoints in `out_dir/checkpoints`, the latest `keep` of them kept.

    A checkpoint's step is the number of segments done; its meta adds `segments_done`,
    `iteration` and `log_records` (how many log records belong to it) to the run's meta.
    With several processes every process makes, saves and restores the checkpoints (orbax
    coordinates them); only process 0 moves a skipped one.
    """

    def __init__(self, out_dir: str, keep: int | None, *, create: bool = True):
        import orbax.checkpoint as ocp

        self.out_dir = out_dir
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=create)
        self._manager = ocp.CheckpointManager(os.path.join(out_dir, "checkpoints"), options=options)

    def steps(self) -> list[int]:
        """The steps held, newest first."""
        return sorted(self._manager.all_steps(), reverse=True)

    def read_meta(self, step: int) -> dict:
        """The meta saved with checkpoint `step` (its state is not read)."""
        import orbax.checkpoint as ocp

        return self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
            "meta"
        ]

    def restore_latest(
        self,
        template: Any,
        meta: dict,
        run_length_fields: Sequence[str] = (),
        echo: Callable[[str], None] = print,
    ) -> tuple[Any, dict] | None:
        """`(state, saved meta)` of the newest checkpoint that restores; None when none is held.

        A checkpoint that does not restore is skipped, with one line to `echo` saying which
        and why, and moved to `OUT/skipped_checkpoints/` once an older one has restored.

        Raises:
          Incompatible: the checkpoints belong to another run.
          RuntimeError: checkpoints are held but none restores (nothing is moved).
        """
        import orbax.checkpoint as ocp

        skipped: list[tuple[int, str]] = []
        for step in self.steps():
            try:
                saved = self.read_meta(step)
            except Exception as e:  # unreadable: skip it, whatever orbax raised
                skipped.append((step, _one_line(e)))
                continue
            check_compatible(saved, meta, self.out_dir, run_length_fields)
            try:
                restored = self._manager.restore(
                    step,
                    args=ocp.args.Composite(state=ocp.args.StandardRestore(unwrap_keys(template))),
                )
            except Exception as e:  # a truncated or missing data file
                skipped.append((step, _one_line(e)))
                _collect_aborted_reads()
                continue
            for bad, why in skipped:
                echo(
                    f"[harness] skipped checkpoint {bad} of {self.out_dir}: it does not "
                    f"restore ({why}); resuming from checkpoint {step}; moved it to "
                    f"{self._set_aside(bad)}"
                )
            if skipped:
                self._sync()
            return rewrap_keys(restored["state"], template), saved
        if skipped:
            reasons = "; ".join(f"checkpoint {s}: {why}" for s, why in skipped)
            raise RuntimeError(
                f"no checkpoint of {self.out_dir} restores ({reasons}); start over "
                "(resume=False, --no-resume) or use another output folder"
            )
        return None

    def _set_aside(self, step: int) -> str:
        """Moves checkpoint `step` to `OUT/skipped_checkpoints/` (process 0); its new path."""
        folder = os.path.join(self.out_dir, SKIPPED)
        target = os.path.join(folder, str(step))
        n = 1
        while os.path.exists(target):
            target, n = os.path.join(folder, f"{step}.{n}"), n + 1
        if jax.process_index() == 0:
            os.makedirs(folder, exist_ok=True)
            shutil.move(os.path.join(self.out_dir, "checkpoints", str(step)), target)
        return target

    def _sync(self) -> None:
        """Every process sees the checkpoints as process 0 left them."""
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("checkpoints set aside")
        self._manager.reload()

    def clear(self) -> None:
        """Deletes every checkpoint (a run that starts over)."""
        for step in list(self._manager.all_steps()):
            self._manager.delete(step)

    def save(self, step: int, states: Any, meta: dict) -> None:
        import orbax.checkpoint as ocp

        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(unwrap_keys(states)), meta=ocp.args.JsonSave(meta)
            ),
        )

    def close(self) -> None:
        """Waits for pending writes, then releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()


def saved_meta(out_dir: str) -> dict | None:
    """The meta of the newest readable checkpoint in `out_dir`, or None; creates nothing."""
    if not os.path.isdir(os.path.join(out_dir, "checkpoints")):
        return None
    store = Checkpoints(out_dir, None, create=False)  # read, never saved to
    try:
        for step in store.steps():
            try:
                return store.read_meta(step)
            except Exception:  # unreadable: the run will skip it too
                continue
        return None
    finally:
        store.close()
