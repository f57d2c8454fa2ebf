"""Training the VAE: `init`, `step` (in named stages), `evaluate`, `units`.

One `step` is: the epoch's batch; the aggressive inner loop (encoder steps until
`stabilizers.until_converged` stops them); the outer step (the decoder always, the encoder
only when the aggressive phase is off); and, at an epoch end, the held-out MI that feeds
the switch-off rule and the validation loss that feeds the learning-rate schedule. The
epoch-end stage is a `lax.cond` on the iteration count shared by every seed
(`stabilizers.SharedCount`), so it stays a real branch under the harness's vmap.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

import stabilizers
from generative.vae.config import Config
from generative.vae.loading import dataset, epoch_iterations, is_text
from generative.vae.lr_schedule import Schedule, init_schedule, tree_where, update_schedule
from generative.vae.metrics import (
    active_units,
    held_out_loss,
    held_out_mi,
    importance_nll,
    minibatch_mutual_information,
    mutual_information,
)
from generative.vae.model import encode, init_params, log_likelihood
from generative.vae.objectives import batch_loss, gaussian_kl, kl_weight


class State(NamedTuple):
    """Training state of one seed.

    Attributes:
      enc, dec: encoder (phi) and decoder (theta) params.
      enc_opt, dec_opt: their optimizer states.
      switch: the aggressive phase (`stabilizers.SwitchOffState`; stays on only when
        `config.aggressive`).
      order: the permutation of training examples for the current epoch.
      mi_val: the latest epoch-end MI on validation data (0 before the first epoch end).
      inner_steps: encoder steps of the latest inner loop (0 when not aggressive).
      schedule: the learning-rate decay and the best params (`Schedule`).
      count: iterations done, shared by every seed (`stabilizers.SharedCount`).
      key: the random key.
    """

    enc: Any
    dec: Any
    enc_opt: Any
    dec_opt: Any
    switch: stabilizers.SwitchOffState
    order: jax.Array
    mi_val: jax.Array
    inner_steps: jax.Array
    schedule: Schedule
    count: stabilizers.SharedCount
    key: jax.Array


class Partners(NamedTuple):
    """The encoder and decoder params with their optimizer states, as a step moves them."""

    enc: Any
    dec: Any
    enc_opt: Any
    dec_opt: Any


def optimizer(config: Config, scale=1.0) -> optax.GradientTransformation:
    """The optimizer of encoder and decoder at learning rate `learning_rate * scale`."""
    if config.optimizer == "sgd":
        return optax.sgd(config.learning_rate * scale)
    if config.optimizer == "adam":
        return optax.adam(config.learning_rate * scale)
    raise ValueError(f"optimizer must be 'sgd' or 'adam'; got {config.optimizer!r}")


def switch_rule(config: Config) -> stabilizers.SwitchOff:
    """The rule that ends the aggressive phase when the held-out MI stops rising."""
    return stabilizers.switch_off(
        patience=config.switch_patience,
        compare=config.switch_compare,
        initial=config.switch_initial,
    )


def init(key: jax.Array, config: Config) -> State:
    data = dataset(config)
    params_key, order_key, key = jax.random.split(key, 3)
    enc, dec = init_params(params_key, config)
    tx = optimizer(config)
    switch = switch_rule(config).init()
    switch = switch._replace(active=jnp.asarray(config.aggressive, bool))
    return State(
        enc=enc,
        dec=dec,
        enc_opt=tx.init(enc),
        dec_opt=tx.init(dec),
        switch=switch,
        order=jax.random.permutation(order_key, len(data.train)).astype(jnp.int32),
        mi_val=jnp.zeros((), jnp.float32),
        inner_steps=jnp.zeros((), jnp.int32),
        schedule=init_schedule(enc, dec),
        count=stabilizers.shared_count(),
        key=key,
    )


def batch_examples(train: jax.Array, idx: jax.Array, key: jax.Array, config: Config) -> jax.Array:
    """Training examples `idx`; images are binarised afresh (dynamic binarisation)."""
    x = train[idx]
    if is_text(config):
        return x
    return jax.random.bernoulli(key, x).astype(jnp.float32)


def clip_joint(grads, config: Config):
    """Clips the (encoder, decoder) gradients to `clip_norm` by their joint global norm,
    as the authors' `clip_grad_norm_(vae.parameters(), 5)` (also in encoder-only steps)."""
    norm = optax.tree.norm(grads)
    scale = jnp.minimum(1.0, config.clip_norm / jnp.maximum(norm, 1e-12))
    return jax.tree.map(lambda g: g * scale, grads)


def _epoch_batch(state: State, n: int, per_epoch: int, key: jax.Array, config: Config):
    """(order, idx): a fresh permutation at each epoch start (a real branch: the count is
    shared), and the indices of this step's batch in it."""
    b = config.batch_size
    pos = state.count.value % per_epoch
    order = jax.lax.cond(
        pos == 0,
        lambda k: jax.random.permutation(k, n).astype(jnp.int32),
        lambda k: state.order,
        key,
    )
    idx = jax.lax.dynamic_slice(order, ((pos * b) % max(n - b + 1, 1),), (b,))
    return order, idx


def _inner_loop(state, train, idx, beta, tx, running, key, config: Config):
    """The aggressive inner loop: encoder steps until the windowed loss stops falling; the
    first on the step's batch, the next ones on random batches. Returns (enc, enc_opt,
    steps); the state's encoder and 0 steps when not aggressive."""
    if not config.aggressive:
        return state.enc, state.enc_opt, jnp.zeros((), jnp.int32)
    n, b = train.shape[0], config.batch_size

    def inner(carry):
        enc_i, opt_i, k, idx_i = carry
        k, bin_key, loss_key, next_key = jax.random.split(k, 4)
        xb = batch_examples(train, idx_i, bin_key, config)
        (loss, _), grads = jax.value_and_grad(batch_loss, argnums=(0, 1), has_aux=True)(
            enc_i, state.dec, xb, loss_key, beta, config
        )
        g_enc, _ = clip_joint(grads, config)
        upd, opt_i = tx.update(g_enc, opt_i, enc_i)
        enc_i = optax.apply_updates(enc_i, upd)
        next_idx = jax.random.randint(next_key, (b,), 0, n)
        return (enc_i, opt_i, k, next_idx), loss

    (enc, enc_opt, _, _), info = stabilizers.until_converged(
        inner,
        (state.enc, state.enc_opt, key, idx),
        max_steps=config.inner_max_steps,
        window=config.inner_window,
        active=state.switch.active & running,
    )
    return enc, enc_opt, info.steps


def _outer_step(state, enc, enc_opt, train, idx, beta, tx, running, key, config: Config):
    """One joint step on the step's batch: the decoder always moves, the encoder only when
    the aggressive phase is off (its gradient is computed and discarded otherwise).
    Returns (partners, (loss, rec, kl))."""
    bin_key, loss_key = jax.random.split(key)
    xb = batch_examples(train, idx, bin_key, config)
    (loss, (rec, kl)), grads = jax.value_and_grad(batch_loss, argnums=(0, 1), has_aux=True)(
        enc, state.dec, xb, loss_key, beta, config
    )
    g_enc, g_dec = clip_joint(grads, config)
    upd, new_dec_opt = tx.update(g_dec, state.dec_opt, state.dec)
    new_dec = optax.apply_updates(state.dec, upd)
    upd, new_enc_opt = tx.update(g_enc, enc_opt, enc)
    new_enc = optax.apply_updates(enc, upd)
    enc_moves = running & ~state.switch.active  # the phase is off unless aggressive
    partners = Partners(
        enc=tree_where(enc_moves, new_enc, enc),
        dec=tree_where(running, new_dec, state.dec),
        enc_opt=tree_where(enc_moves, new_enc_opt, enc_opt),
        dec_opt=tree_where(running, new_dec_opt, state.dec_opt),
    )
    return partners, (loss, rec, kl)


def _epoch_end(operand, val, epoch, mi_key, val_key, config: Config):
    """The epoch-end checks: the held-out MI and the switch-off rule; the validation loss
    and the learning-rate schedule (which may reload the best params with fresh optimizer
    states). `operand` and the result: (partners, switch, schedule, mi_val)."""
    partners, switch, sched, _ = operand
    enc, dec, enc_opt, dec_opt = partners
    mi = held_out_mi(enc, val, mi_key, config, config.switch_mi_batch)
    if config.aggressive:
        switch = switch_rule(config).update(switch, mi)
    if config.lr_decay:
        loss = held_out_loss(enc, dec, val, val_key, config)
        loss = jnp.where(jnp.isfinite(loss), loss, 1e9)
        sched, enc, dec, reload = update_schedule(sched, enc, dec, loss, epoch, config)
        fresh = optimizer(config, sched.lr_scale)
        enc_opt = tree_where(reload, fresh.init(enc), enc_opt)
        dec_opt = tree_where(reload, fresh.init(dec), dec_opt)
    return Partners(enc, dec, enc_opt, dec_opt), switch, sched, mi


def step(state: State, config: Config) -> tuple[State, dict[str, jax.Array]]:
    data = dataset(config)
    train = jnp.asarray(data.train)
    per_epoch = epoch_iterations(config)
    t = state.count.value
    key, order_key, inner_key, outer_key, mi_key, val_key = jax.random.split(state.key, 6)
    running = state.schedule.decays < config.max_decays if config.lr_decay else jnp.array(True)
    tx = optimizer(config, state.schedule.lr_scale)
    order, idx = _epoch_batch(state, train.shape[0], per_epoch, order_key, config)
    beta = kl_weight(config, t)
    enc, enc_opt, inner_steps = _inner_loop(state, train, idx, beta, tx, running, inner_key, config)
    partners, (loss, rec, kl) = _outer_step(
        state, enc, enc_opt, train, idx, beta, tx, running, outer_key, config
    )
    epoch_end = functools.partial(
        _epoch_end,
        val=jnp.asarray(data.val[: config.val_examples or None]),
        epoch=(t + 1) // per_epoch - 1,
        mi_key=mi_key,
        val_key=val_key,
        config=config,
    )
    partners, switch, sched, mi_val = jax.lax.cond(
        (t + 1) % per_epoch == 0,
        epoch_end,
        lambda operand: operand,
        (partners, state.switch, state.schedule, state.mi_val),
    )
    new_state = State(
        enc=partners.enc,
        dec=partners.dec,
        enc_opt=partners.enc_opt,
        dec_opt=partners.dec_opt,
        switch=switch,
        order=order,
        mi_val=mi_val,
        inner_steps=inner_steps,
        schedule=sched,
        count=stabilizers.SharedCount(t + 1),
        key=key,
    )
    return new_state, {
        "loss": loss,
        "elbo": -(rec + kl),
        "rec": rec,
        "kl": kl,
        "kl_weight": beta,
        "aggressive": state.switch.active.astype(jnp.float32),
        "inner_steps": inner_steps.astype(jnp.float32),
        "mi_val": mi_val,
        "val_loss": sched.val_loss,
        "lr_scale": sched.lr_scale,
    }


def evaluate(state: State, config: Config, key: jax.Array) -> dict[str, jax.Array]:
    """ELBO, rec, KL, MI (whole-set and minibatch), AU and (iw_samples > 0) the IW NLL on
    the first `eval_examples` test examples, dropout off; all in nats per example.

    With `lr_decay` the params evaluated are those with the best validation loss so far
    (before the first epoch end: the current params), as the authors report."""
    data = dataset(config)
    xs = jnp.asarray(data.test[: config.eval_examples])
    z_key, rec_key, nll_key = jax.random.split(key, 3)
    if config.lr_decay:
        before = state.count.value < epoch_iterations(config)
        enc = tree_where(before, state.enc, state.schedule.best_enc)
        dec = tree_where(before, state.dec, state.schedule.best_dec)
    else:
        enc, dec = state.enc, state.dec
    mu, logvar = jax.vmap(lambda x: encode(enc, x, config))(xs)
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(z_key, mu.shape)
    rec = -jax.vmap(lambda x, zz, k: log_likelihood(dec, x, zz, k, config, False))(
        xs, z, jax.random.split(rec_key, xs.shape[0])
    )
    kl = jax.vmap(gaussian_kl)(mu, logvar)
    out = {
        "elbo": -jnp.mean(rec + kl),
        "rec": jnp.mean(rec),
        "kl": jnp.mean(kl),
        "mi": mutual_information(mu, logvar, z),
        "mi_batch": minibatch_mutual_information(mu, logvar, z, config.batch_size),
        "au": active_units(mu).astype(jnp.float32),
        "aggressive": state.switch.active.astype(jnp.float32),
    }
    if config.iw_samples:
        nll = jax.lax.map(
            lambda a: importance_nll(enc, dec, a[0], a[1], config, config.iw_samples),
            (xs, jax.random.split(nll_key, xs.shape[0])),
        )
        out["nll"] = jnp.mean(nll)
    return out


def units(config: Config) -> tuple[str, int]:
    """One iteration is one outer step on `batch_size` examples (the aggressive inner
    loop's extra encoder steps are not counted)."""
    return "samples", config.batch_size
