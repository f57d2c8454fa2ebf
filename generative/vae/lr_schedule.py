"""The authors' learning-rate decay with checkpoint selection, run at every epoch end.

The validation loss is compared with a reference; after `decay_patience` epoch ends above
it the learning rate is multiplied by `decay_factor` and the best params so far are
reloaded (`Config.lr_decay`; He et al.'s `toy.py` / `text.py`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from generative.vae.config import Config


class Schedule(NamedTuple):
    """The state of the decay schedule.

    Attributes:
      best_enc, best_dec: the params with the lowest validation loss so far.
      best_loss: that loss (a large number before the first epoch end).
      reference: the loss the next epoch end is compared with (the authors'
        `opt_dict["best_loss"]`: the previous loss, or the one at the last decay).
      not_improved: epoch ends above the reference since the last improvement or decay.
      lr_scale: the learning rate's factor (`decay_factor ** decays`).
      decays: decays so far; training stops at `max_decays`.
      val_loss: the latest validation loss (carried for logging).
    """

    best_enc: Any
    best_dec: Any
    best_loss: jax.Array
    reference: jax.Array
    not_improved: jax.Array
    lr_scale: jax.Array
    decays: jax.Array
    val_loss: jax.Array


def tree_where(pred, a, b):
    """`a` where `pred` else `b`, leaf by leaf."""
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def init_schedule(enc, dec) -> Schedule:
    """The schedule before the first epoch end (the authors' initial loss 1e4)."""
    return Schedule(
        best_enc=enc,
        best_dec=dec,
        best_loss=jnp.asarray(1e4, jnp.float32),
        reference=jnp.asarray(1e4, jnp.float32),
        not_improved=jnp.zeros((), jnp.int32),
        lr_scale=jnp.ones((), jnp.float32),
        decays=jnp.zeros((), jnp.int32),
        val_loss=jnp.zeros((), jnp.float32),
    )


def update_schedule(sched: Schedule, enc, dec, loss, epoch, config: Config):
    """One epoch end (0-based `epoch`) with validation loss `loss`.

    Returns:
      (schedule, enc, dec, reloaded): the params are the best ones when the learning rate
      decays (`reloaded`), else the ones given.
    """
    better = loss < sched.best_loss
    best_enc = tree_where(better, enc, sched.best_enc)
    best_dec = tree_where(better, dec, sched.best_dec)
    above = loss > sched.reference
    not_improved = jnp.where(above, sched.not_improved + 1, 0)
    decay = above & (not_improved >= config.decay_patience) & (epoch >= config.decay_min_epoch)
    sched = Schedule(
        best_enc=best_enc,
        best_dec=best_dec,
        best_loss=jnp.where(better, loss, sched.best_loss),
        reference=jnp.where(above & ~decay, sched.reference, loss),
        not_improved=jnp.where(decay, 0, not_improved),
        lr_scale=jnp.where(decay, sched.lr_scale * config.decay_factor, sched.lr_scale),
        decays=sched.decays + decay.astype(jnp.int32),
        val_loss=loss,
    )
    return sched, tree_where(decay, best_enc, enc), tree_where(decay, best_dec, dec), decay
