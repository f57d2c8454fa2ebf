"""The paper's diagnostics: mutual information, active units, the importance-sampled NLL,
the model's posterior mean on a grid, and the held-out MI and loss of the epoch-end checks.

Reference: He, Spokoyny, Neubig & Berg-Kirkpatrick, Lagging inference networks and
posterior collapse in variational autoencoders, ICLR 2019 (`calc_mi`, `calc_au`, `nll_iw`,
`calc_model_posterior_mean` in jxhe/vae-lagging-encoder).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from generative.vae.config import Config
from generative.vae.model import encode, log_likelihood
from generative.vae.objectives import LOG_2PI, batch_loss, gaussian_log_density


def mutual_information(mu, logvar, z):
    r"""Monte-Carlo I_q from one z_i ~ q(z|x_i) per example, q(z) the mixture over the set.

    .. math::
      \hat I = \frac1N \sum_i \Big[-\tfrac{d}{2}\log 2\pi - \tfrac12 \sum_k (1 + \log
      \sigma^2_{ik})\Big] - \frac1N \sum_i \log \frac1N \sum_j q(z_i | x_j).

    At most log N in expectation; slightly negative near I_q = 0 (not clipped).

    Args:
      mu, logvar: [N, d] encoder outputs.
      z: [N, d], one sample from each q(z|x_i).
    """
    n, d = mu.shape
    neg_entropy = jnp.mean(-0.5 * d * LOG_2PI - 0.5 * jnp.sum(1.0 + logvar, axis=1))

    def row(z_i):
        return jax.scipy.special.logsumexp(
            jax.vmap(gaussian_log_density, in_axes=(None, 0, 0))(z_i, mu, logvar)
        )

    log_qz = jax.lax.map(row, z, batch_size=min(n, 256)) - math.log(n)
    return neg_entropy - jnp.mean(log_qz)


def minibatch_mutual_information(mu, logvar, z, batch_size: int):
    """The authors' MI: `mutual_information` on consecutive minibatches, averaged
    (a trailing partial batch is dropped)."""
    n = (mu.shape[0] // batch_size) * batch_size
    shape = (n // batch_size, batch_size, mu.shape[1])
    return jnp.mean(
        jax.vmap(mutual_information)(
            mu[:n].reshape(shape), logvar[:n].reshape(shape), z[:n].reshape(shape)
        )
    )


def active_units(mu, threshold: float = 0.01):
    """AU = #{i : Var_x(E_q[z_i|x]) > threshold} from encoder means mu [N, d] (unbiased
    variance, as the authors' `calc_au`)."""
    return jnp.sum(jnp.var(mu, axis=0, ddof=1) > threshold)


def importance_log_marginal(log_lik, mu, logvar, key, samples: int, chunk: int | None = None):
    r"""log p(x) by importance sampling with K = `samples` draws z_k ~ q = N(mu, diag
    exp(logvar)) and the prior N(0, I):

    .. math::
      \log \frac1K \sum_{k=1}^K \frac{p(x|z_k)\, p(z_k)}{q(z_k)},

    a lower bound in expectation that tightens as K grows (K = 1: the ELBO).

    Args:
      log_lik: `z [d] -> log p(x|z)` for the example x.
      mu, logvar: [d], the proposal (the encoder's q(z|x)).
      key: the key of the draws.
      samples: K.
      chunk: draws evaluated at once (memory); must divide K (default: all).
    """
    chunk = min(chunk or samples, samples)
    if samples % chunk:
        raise ValueError(f"samples ({samples}) must be a multiple of chunk ({chunk})")
    eps = jax.random.normal(key, (samples // chunk, chunk) + mu.shape)
    zeros = jnp.zeros_like(mu)

    def log_weights(e):
        z = mu[None, :] + jnp.exp(0.5 * logvar)[None, :] * e
        ll = jax.vmap(log_lik)(z)
        prior = jax.vmap(gaussian_log_density, in_axes=(0, None, None))(z, zeros, zeros)
        post = jax.vmap(gaussian_log_density, in_axes=(0, None, None))(z, mu, logvar)
        return ll + prior - post

    lw = jax.lax.map(log_weights, eps).reshape(-1)
    return jax.scipy.special.logsumexp(lw) - math.log(samples)


def importance_nll(enc, dec, x, key, config: Config, samples: int):
    """-log p(x) of one example by `importance_log_marginal` with q(z|x) as proposal."""
    mu, logvar = encode(enc, x, config)
    log_lik = lambda z: log_likelihood(dec, x, z, key, config, False)  # noqa: E731
    return -importance_log_marginal(log_lik, mu, logvar, key, samples, config.iw_chunk)


def posterior_mean_on_grid(log_lik, grid):
    r"""E_{p(z|x)}[z] under the prior N(0, I), by quadrature on a uniform grid [G, d]:

    .. math::
      \frac{\sum_g z_g\, p(x|z_g)\, p(z_g)}{\sum_g p(x|z_g)\, p(z_g)}.

    `log_lik`: `z [d] -> log p(x|z)` (the paper's Figure 2: d = 1, [-20, 20], step 0.1).
    """
    ll = jax.lax.map(log_lik, grid, batch_size=min(grid.shape[0], 512))
    zeros = jnp.zeros(grid.shape[1])
    prior = jax.vmap(gaussian_log_density, in_axes=(0, None, None))(grid, zeros, zeros)
    return jax.nn.softmax(ll + prior) @ grid


def model_posterior_mean(dec, x, grid, config: Config):
    """The decoder's posterior mean E_{p(z|x)}[z] of one example on a grid [G, d]."""
    return posterior_mean_on_grid(
        lambda z: log_likelihood(dec, x, z, jax.random.key(0), config, False), grid
    )


def held_out_mi(enc, xs, key, config: Config, minibatch: int) -> jax.Array:
    """I_q on held-out examples xs (dropout off): averaged over minibatches of `minibatch`,
    or one estimate over all of xs when `minibatch` is 0."""
    mu, logvar = jax.vmap(lambda x: encode(enc, x, config))(xs)
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape)
    if minibatch:
        return minibatch_mutual_information(mu, logvar, z, minibatch)
    return mutual_information(mu, logvar, z)


def held_out_loss(enc, dec, xs, key, config: Config) -> jax.Array:
    """The negative ELBO (beta = 1, one z, dropout off) averaged over xs, in chunks."""
    chunk = min(xs.shape[0], 500)
    n = (xs.shape[0] // chunk) * chunk
    keys = jax.random.split(key, n // chunk)

    def part(a):
        loss, _ = batch_loss(enc, dec, a[0], a[1], 1.0, config, train=False)
        return loss

    return jnp.mean(jax.lax.map(part, (xs[:n].reshape((n // chunk, chunk) + xs.shape[1:]), keys)))
