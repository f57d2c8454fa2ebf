"""The ELBO and its pieces: the Gaussian KL and log-density, the KL weight of annealing.

    L(x) = E_{q(z|x)}[log p(x|z)] - beta * KL(q(z|x) || N(0, I)),

beta = 1 except while KL annealing (Bowman et al., Generating sentences from a continuous
space, 2016) raises it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from generative.vae.config import Config
from generative.vae.loading import epoch_iterations
from generative.vae.model import encode, log_likelihood

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_kl(mu, logvar):
    """KL(N(mu, diag exp(logvar)) || N(0, I)) = 0.5 sum(mu^2 + exp(logvar) - logvar - 1)."""
    return 0.5 * jnp.sum(jnp.square(mu) + jnp.exp(logvar) - logvar - 1.0)


def gaussian_log_density(z, mu, logvar):
    """log N(z; mu, diag exp(logvar)), summed over dimensions."""
    return -0.5 * jnp.sum(LOG_2PI + logvar + jnp.square(z - mu) * jnp.exp(-logvar))


def elbo_terms(enc, dec, x, key, config: Config, train: bool = True):
    """(rec, kl) of one example: rec = -log p(x|z) at one z ~ q(z|x), kl analytic."""
    k_z, k_dec = jax.random.split(key)
    mu, logvar = encode(enc, x, config)
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(k_z, mu.shape)
    rec = -log_likelihood(dec, x, z, k_dec, config, train)
    return rec, gaussian_kl(mu, logvar)


def batch_loss(enc, dec, xs, key, beta, config: Config, train: bool = True):
    """mean_i [rec_i + beta * kl_i] over a batch, and (rec, kl) means."""
    keys = jax.random.split(key, xs.shape[0])
    rec, kl = jax.vmap(lambda x, k: elbo_terms(enc, dec, x, k, config, train))(xs, keys)
    return jnp.mean(rec + beta * kl), (jnp.mean(rec), jnp.mean(kl))


def kl_weight(config: Config, iteration: jax.Array) -> jax.Array:
    """beta at 0-based iteration t: min(1, kl_start + (t + 1) (1 - kl_start) / (W E)),
    W = warm_up_epochs, E = iterations per epoch (the authors raise it before each step)."""
    rate = (1.0 - config.kl_start) / (config.warm_up_epochs * epoch_iterations(config))
    return jnp.minimum(1.0, config.kl_start + (iteration + 1).astype(jnp.float32) * rate)
