"""A run's orbax checkpoints: the grid's state beside the meta that says which run it is.

The meta (format version, algorithm name, config, seeds, sweep, segment length) must match
for a run to resume from a checkpoint; `iterations` may grow.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp

COMPATIBLE = ("format_version", "algo", "config", "seeds", "sweep", "segment_length")
"""The meta fields a resumed run must share with the checkpoint it resumes from."""


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


class Checkpoints:
    """The checkpoints in `out_dir/checkpoints`, the latest `keep` of them kept.

    A checkpoint's step is the number of segments done; its meta adds `segments_done`,
    `iteration` and `log_records` (how many log records belong to it) to the run's meta.
    """

    def __init__(self, out_dir: str, keep: int):
        import orbax.checkpoint as ocp

        self.out_dir = out_dir
        self._manager = ocp.CheckpointManager(
            os.path.join(out_dir, "checkpoints"),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        )

    def restore_latest(self, template: Any, meta: dict) -> tuple[Any, dict] | None:
        """`(state, saved meta)` of the latest checkpoint, or None when there is none.

        Raises:
          ValueError: the checkpoint belongs to another run (see `COMPATIBLE`).
        """
        import orbax.checkpoint as ocp

        latest = self._manager.latest_step()
        if latest is None:
            return None
        restored = self._manager.restore(
            latest,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(unwrap_keys(template)),
                meta=ocp.args.JsonRestore(),
            ),
        )
        saved = restored["meta"]
        for field in COMPATIBLE:
            if saved.get(field) != meta[field]:
                raise ValueError(
                    f"{self.out_dir} holds a run with a different {field} "
                    f"({saved.get(field)!r} != {meta[field]!r}); use another out_dir or "
                    "resume=False"
                )
        return rewrap_keys(restored["state"], template), saved

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
