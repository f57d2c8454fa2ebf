"""VAE with aggressive inference-network training (He et al., ICLR 2019).

A VAE with a strong autoregressive decoder (an LSTM on text, a small PixelCNN on images)
trained on the ELBO,

    L(x) = E_{q_phi(z|x)}[log p_theta(x|z)] - beta * KL(q_phi(z|x) || N(0, I)),

in one of three ways:

- basic: one joint gradient step on (phi, theta) per batch (beta = 1);
- KL annealing (`kl_start < 1`): beta rises linearly from `kl_start` to 1 over the first
  `warm_up_epochs` epochs (Bowman et al. 2016);
- aggressive (`aggressive=True`): while the phase is on, each outer step first trains the
  encoder alone until its loss stops improving (`stabilizers.until_converged`), then takes
  one decoder step on the original batch; at every epoch end the mutual information I_q
  on held-out data is measured and the phase switches off for good when it stops rising
  (`stabilizers.switch_off`). After that, training is basic.

Modules: `config` (Config, PRESETS), `loading` (the data of a config), `text` (LSTM
encoder and decoder), `image` (PixelCNN decoder), `model` (the one a config calls for),
`objectives` (ELBO, KL), `metrics` (MI, AU, importance-sampled NLL, posterior mean on a
grid), `lr_schedule` (the learning-rate decay with checkpoint selection), `training`
(init, step, evaluate, units).

Reference: He, Spokoyny, Neubig & Berg-Kirkpatrick, Lagging inference networks and
posterior collapse in variational autoencoders, ICLR 2019; code: jxhe/vae-lagging-encoder.
"""

from generative.vae.config import PRESETS, RUN_LENGTH_FIELDS, Config
from generative.vae.image import image_logits
from generative.vae.loading import dataset, epoch_iterations
from generative.vae.lr_schedule import Schedule, update_schedule
from generative.vae.metrics import (
    active_units,
    held_out_loss,
    held_out_mi,
    importance_log_marginal,
    importance_nll,
    minibatch_mutual_information,
    model_posterior_mean,
    mutual_information,
    posterior_mean_on_grid,
)
from generative.vae.model import encode, init_params, log_likelihood
from generative.vae.objectives import (
    batch_loss,
    elbo_terms,
    gaussian_kl,
    gaussian_log_density,
    kl_weight,
)
from generative.vae.training import State, evaluate, init, step, units

__all__ = [
    "PRESETS",
    "RUN_LENGTH_FIELDS",
    "Config",
    "Schedule",
    "State",
    "active_units",
    "batch_loss",
    "dataset",
    "elbo_terms",
    "encode",
    "epoch_iterations",
    "evaluate",
    "gaussian_kl",
    "gaussian_log_density",
    "held_out_loss",
    "held_out_mi",
    "image_logits",
    "importance_log_marginal",
    "importance_nll",
    "init",
    "init_params",
    "kl_weight",
    "log_likelihood",
    "minibatch_mutual_information",
    "model_posterior_mean",
    "mutual_information",
    "posterior_mean_on_grid",
    "step",
    "units",
    "update_schedule",
]
