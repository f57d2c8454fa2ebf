"""Sample-quality metrics, in JAX: energy distance (2-D) and a classifier Frechet distance.

- `energy_distance(x, y)`: the V-statistic of Szekely's energy distance,
  `2 E|X - Y| - E|X - X'| - E|Y - Y'|` over all pairs (diagonals included). It is biased
  upward by about `E|X - X'| / n + E|Y - Y'| / m`, so two finite samples of one
  distribution give a positive value that shrinks as 1 / n: print it beside its floor (the
  same distance between two independent held-out sets of the same sizes), and read a ratio
  to that floor as a multiple of the finite-sample bias at that n, not as a scale-free score.
- `energy_distance_u(x, y)`: the unbiased U-statistic of the same distance (within-sample
  means over i != j): about 0 for two samples of one distribution, at any n.
- `frechet_distance(f, g)`: `|mu_f - mu_g|^2 + tr(S_f + S_g - 2 (S_f S_g)^(1/2))` between
  Gaussians fitted to two sets of features. With `classifier_features` (a small digit
  classifier trained once on the real images, then cached on disk) this is a small-data
  stand-in for FID: the features are not Inception's, the sets are thousands, not 50k,
  and its numbers are not comparable with published FIDs.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

import datasources
from generative import data as gdata
from generative.networks import Classifier


def _mean_pairwise_distance(x: jax.Array, y: jax.Array, chunk: int = 250) -> jax.Array:
    """mean_{i,j} |x_i - y_j|, over row chunks of x (bounded memory under vmap)."""
    y_sq = jnp.sum(y * y, axis=-1)

    def row_sums(xi):
        sq = jnp.sum(xi * xi) + y_sq - 2.0 * (y @ xi)
        return jnp.sum(jnp.sqrt(jnp.maximum(sq, 0.0)))

    sums = jax.lax.map(row_sums, x, batch_size=min(chunk, x.shape[0]))
    return jnp.sum(sums) / (x.shape[0] * y.shape[0])


def _mean_offdiagonal_distance(x: jax.Array, chunk: int = 250) -> jax.Array:
    """mean_{i != j} |x_i - x_j|: the diagonal is masked out, not left to rounding."""
    n = x.shape[0]
    x_sq = jnp.sum(x * x, axis=-1)

    def row_sums(args):
        xi, i = args
        sq = jnp.sum(xi * xi) + x_sq - 2.0 * (x @ xi)
        dist = jnp.sqrt(jnp.maximum(sq, 0.0))
        return jnp.sum(jnp.where(jnp.arange(n) == i, 0.0, dist))

    sums = jax.lax.map(row_sums, (x, jnp.arange(n)), batch_size=min(chunk, n))
    return jnp.sum(sums) / (n * (n - 1))


def energy_distance(x: jax.Array, y: jax.Array) -> jax.Array:
    r"""Energy distance (V-statistic) between sample sets `x [n, d]` and `y [m, d]`.

    .. math::
      V(x, y) = \frac{2}{nm}\sum_{i,j}|x_i - y_j| - \frac{1}{n^2}\sum_{i,j}|x_i - x_j|
      - \frac{1}{m^2}\sum_{i,j}|y_i - y_j|.

    The within-sample sums include their zero diagonals, so with
    :math:`A_x = \frac{1}{n(n-1)}\sum_{i \ne j}|x_i - x_j|` (and :math:`A_y` alike),
    :math:`V = U + A_x / n + A_y / m` (up to rounding) with U of `energy_distance_u`, and
    :math:`E[V] = \mathcal{E}(X, Y) + E|X - X'| / n + E|Y - Y'| / m`, about
    :math:`2 E|X - X'| / n` for two samples of one distribution with n = m.

    References:
      Szekely & Rizzo, Energy statistics: a class of statistics based on distances, 2013.
    """
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    return (
        2.0 * _mean_pairwise_distance(x, y)
        - _mean_pairwise_distance(x, x)
        - _mean_pairwise_distance(y, y)
    )


def energy_distance_u(x: jax.Array, y: jax.Array) -> jax.Array:
    r"""Energy distance (unbiased U-statistic) between `x [n, d]` and `y [m, d]`, n, m >= 2.

    .. math::
      U(x, y) = \frac{2}{nm}\sum_{i,j}|x_i - y_j|
      - \frac{1}{n(n-1)}\sum_{i \ne j}|x_i - x_j| - \frac{1}{m(m-1)}\sum_{i \ne j}|y_i - y_j|.

    Each term is an unbiased estimate of its expectation, so
    :math:`E[U] = \mathcal{E}(X, Y) = 2E|X - Y| - E|X - X'| - E|Y - Y'|`, which is 0 if and
    only if X and Y have one distribution; U itself may be negative.

    References:
      Szekely & Rizzo, Energy statistics: a class of statistics based on distances, 2013.
    """
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(
            f"energy_distance_u needs 2 or more points a set; got {x.shape}, {y.shape}"
        )
    return (
        2.0 * _mean_pairwise_distance(x, y)
        - _mean_offdiagonal_distance(x)
        - _mean_offdiagonal_distance(y)
    )


def _sqrtm_psd(a: jax.Array) -> jax.Array:
    w, v = jnp.linalg.eigh(a)
    return (v * jnp.sqrt(jnp.maximum(w, 0.0))[None, :]) @ v.T


def frechet_distance(f: jax.Array, g: jax.Array) -> jax.Array:
    r"""Frechet distance between Gaussians fitted to features `f [n, k]` and `g [m, k]`.

    .. math::
      d^2 = \lVert\mu_f - \mu_g\rVert^2 + \operatorname{tr}\left(S_f + S_g
      - 2\,(S_f^{1/2} S_g S_f^{1/2})^{1/2}\right),

    the trace of :math:`(S_f S_g)^{1/2}` computed through the symmetric form.

    References:
      Heusel et al., GANs trained by a two time-scale update rule converge to a local Nash
      equilibrium, 2017 (FID).
    """
    f = jnp.asarray(f, jnp.float32)
    g = jnp.asarray(g, jnp.float32)
    mu_f, mu_g = f.mean(0), g.mean(0)
    s_f = jnp.cov(f, rowvar=False)
    s_g = jnp.cov(g, rowvar=False)
    root_f = _sqrtm_psd(s_f)
    cross = jnp.linalg.eigvalsh(root_f @ s_g @ root_f)
    tr_cross = jnp.sum(jnp.sqrt(jnp.maximum(cross, 0.0)))
    return jnp.sum(jnp.square(mu_f - mu_g)) + jnp.trace(s_f) + jnp.trace(s_g) - 2.0 * tr_cross


# --------------------------------------------------------------------------- classifier


def train_classifier(
    images: np.ndarray, labels: np.ndarray, image_levels: int, *, steps: int = 800, seed: int = 0
):
    """Trains `Classifier` on uint8 `images` (Adam 1e-3, batch 128); returns (params, accuracy).

    The accuracy is measured on a held-out tenth of the images.
    """
    x = images.astype(np.float32) / (image_levels - 1) * 2.0 - 1.0
    y = np.asarray(labels)
    perm = np.random.default_rng(seed).permutation(len(x))
    n_test = len(x) // 10
    test, train = perm[:n_test], perm[n_test:]
    model = Classifier()
    key = jax.random.key(seed)
    init_key, batch_key = jax.random.split(key)
    params = jax.jit(model.init)(init_key, x[:1])["params"]
    tx = optax.adam(1e-3)
    xt, yt = jnp.asarray(x[train]), jnp.asarray(y[train])

    def loss_fn(p, xb, yb):
        _, logits = model.apply({"params": p}, xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    @jax.jit
    def train_step(p, s, k):
        idx = jax.random.randint(k, (128,), 0, xt.shape[0])
        g = jax.grad(loss_fn)(p, xt[idx], yt[idx])
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    # a Python loop of jitted steps: XLA's CPU backend runs convolutions slowly inside
    # `lax.scan`
    opt_state = tx.init(params)
    for k in jax.random.split(batch_key, steps):
        params, opt_state = train_step(params, opt_state, k)
    _, logits = model.apply({"params": params}, jnp.asarray(x[test]))
    accuracy = float(jnp.mean(jnp.argmax(logits, -1) == jnp.asarray(y[test])))
    return params, accuracy


@functools.lru_cache(maxsize=4)
def classifier(name: str):
    """The feature classifier for image set `name` ("digits" or "mnist5k"), cached on disk.

    Trained once (seed 0) and stored in `datasources.cache_dir()/classifier-<name>.msgpack`;
    later calls read it back. Returns `(params, accuracy)` as numpy arrays. Safe to call
    while tracing (inside `jit`): the work runs in a fresh thread, outside the trace
    (JAX's trace state is per thread), and its jitted training loop stays compiled.
    """
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(_classifier, name).result()


def _classifier(name: str):
    images = gdata.load_images(name)
    path = os.path.join(datasources.cache_dir(), f"classifier-{name}.msgpack")
    template = jax.eval_shape(
        Classifier().init, jax.random.key(0), np.zeros((1,) + images.shape[1:], np.float32)
    )["params"]
    if os.path.exists(path):
        with open(path, "rb") as f:
            stored = flax.serialization.msgpack_restore(f.read())
        params = flax.serialization.from_state_dict(template, stored["params"])
        return jax.tree.map(np.asarray, params), float(stored["accuracy"])
    params, accuracy = train_classifier(images, gdata.load_labels(name), gdata.levels(name))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + f".{os.getpid()}.part"
    with open(tmp, "wb") as f:
        f.write(
            flax.serialization.msgpack_serialize(
                {"params": flax.serialization.to_state_dict(params), "accuracy": accuracy}
            )
        )
    os.replace(tmp, path)
    return jax.tree.map(np.asarray, params), accuracy


def classifier_features(name: str, images: jax.Array) -> jax.Array:
    """Penultimate-layer features of the cached classifier for `images` in [-1, 1]."""
    params, _ = classifier(name)
    feats, _ = Classifier().apply({"params": params}, images)
    return feats


@functools.lru_cache(maxsize=8)
def real_reference(name: str, num: int) -> tuple[np.ndarray, float]:
    """Classifier features of the first `num` images of the first real half, and the floor
    (the Frechet distance between the features of the two halves' first `num` images).

    Computed once per (name, num) in a fresh thread, so that a caller inside `jit` embeds
    the result as a constant instead of tracing the classifier on constant images (which
    XLA would constant-fold, slowly, at compile time).
    """

    def work():
        real_a, real_b = real_halves(name)
        feats = jax.jit(classifier_features, static_argnums=0)
        feats_a = feats(name, jnp.asarray(real_a[:num]))
        feats_b = feats(name, jnp.asarray(real_b[:num]))
        return np.asarray(feats_a), float(frechet_distance(feats_a, feats_b))

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(work).result()


@functools.lru_cache(maxsize=4)
def real_halves(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of the real images of `name` (float32 in [-1, 1]), fixed shuffle."""
    images = gdata.load_images(name)
    x = images.astype(np.float32) / (gdata.levels(name) - 1) * 2.0 - 1.0
    perm = np.random.default_rng(1234).permutation(len(x))
    half = len(x) // 2
    return x[perm[:half]], x[perm[half : 2 * half]]
