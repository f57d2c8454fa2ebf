"""The text model: the authors' LSTM encoder and LSTM decoder conditioned on z.

Every weight starts U(-0.01, 0.01), embeddings U(-0.1, 0.1), as in He et al.'s
`LSTMEncoder` / `LSTMDecoder`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from generative import vae_data
from generative.vae.config import Config


def uniform(key, shape, scale):
    """U(-scale, scale) float32 weights."""
    return jax.random.uniform(key, shape, jnp.float32, -scale, scale)


def lstm_params(key, n_in, n_hidden, scale):
    """Params of a one-layer LSTM, every one U(-scale, scale)."""
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "w_ih": uniform(k1, (n_in, 4 * n_hidden), scale),
        "w_hh": uniform(k2, (n_hidden, 4 * n_hidden), scale),
        "b": uniform(k3, (4 * n_hidden,), scale),
    }


def lstm(p, xs, h0, c0, unroll: int = 1):
    """A one-layer LSTM over xs [T, d] from (h0, c0); gates i, f, g, o. Returns hs [T, h]."""
    pre = xs @ p["w_ih"] + p["b"][None, :]

    def cell(hc, pre_t):
        h, c = hc
        g = pre_t + h @ p["w_hh"]
        i, f, u, o = jnp.split(g, 4)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(u)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    _, hs = jax.lax.scan(cell, (h0, c0), pre, unroll=unroll)
    return hs


def dropout(key, x, rate, train):
    """Inverted dropout of x at `rate` when `train`; x itself otherwise."""
    if not train:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def init_params(key, config: Config, vocab: int):
    """(encoder, decoder) params for a vocabulary of `vocab` tokens."""
    ks = jax.random.split(key, 7)
    e, h, nz = config.embed, config.hidden, config.latent
    enc = {
        "embed": uniform(ks[0], (vocab, e), 0.1),
        "lstm": lstm_params(ks[1], e, h, 0.01),
        "out": uniform(ks[2], (h, 2 * nz), 0.01),
    }
    dec = {
        "embed": uniform(ks[3], (vocab, e), 0.1),
        "lstm": lstm_params(ks[4], e + nz, h, 0.01),
        "trans": uniform(ks[5], (nz, h), 0.01),
        "out": uniform(ks[6], (h, vocab), 0.01),
    }
    return enc, dec


def encode(enc, x, config: Config):
    """q(z|x) of one sequence x [T] (`<s> .. </s> <pad>..`): (mu [nz], logvar [nz])."""
    h = enc["lstm"]["w_hh"].shape[0]
    hs = lstm(enc["lstm"], enc["embed"][x], jnp.zeros(h), jnp.zeros(h), config.unroll)
    last = jnp.sum(x != vae_data.PAD) - 1
    mu, logvar = jnp.split(hs[last] @ enc["out"], 2)
    return mu, logvar


def log_likelihood(dec, x, z, key, config: Config, train: bool):
    """log p(x|z) of one sequence: the sum over its tokens after `<s>`, `</s>` included."""
    k_in, k_out = jax.random.split(key)
    inputs, targets = x[:-1], x[1:]
    emb = dropout(k_in, dec["embed"][inputs], config.dropout_in, train)
    zs = jnp.broadcast_to(z, (inputs.shape[0], z.shape[0]))
    c0 = z @ dec["trans"]
    hs = lstm(dec["lstm"], jnp.concatenate([emb, zs], axis=1), jnp.tanh(c0), c0, config.unroll)
    hs = dropout(k_out, hs, config.dropout_out, train)
    logp = jax.nn.log_softmax(hs @ dec["out"])
    tok = jnp.take_along_axis(logp, targets[:, None], axis=1)[:, 0]
    return jnp.sum(jnp.where(targets != vae_data.PAD, tok, 0.0))
