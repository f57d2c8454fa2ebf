"""generative.vae: metrics on known answers, the model's pieces, training modes, data."""

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.io
import scipy.stats

import stabilizers
from benchmarks import harness
from generative import vae, vae_data
from generative.vae import image, text

init = jax.jit(vae.init, static_argnums=1)  # eager init dispatches hundreds of small ops

# A small synthetic setting: the authors' generator and model, few sequences.
TINY = vae.Config(
    num_train=320,
    num_val=64,
    num_test=64,
    embed=16,
    hidden=16,
    eval_examples=64,
    iw_samples=20,
    iw_chunk=10,
)


# ----------------------------------------------------------------------------- metrics


def test_mutual_information_of_an_encoder_that_ignores_x_is_zero():
    key = jax.random.key(0)
    n, d = 2000, 2
    mu = jnp.broadcast_to(jnp.array([0.3, -1.0]), (n, d))
    logvar = jnp.broadcast_to(jnp.array([-0.5, 0.2]), (n, d))
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, (n, d))
    mi = float(vae.mutual_information(mu, logvar, z))
    assert abs(mi) < 0.05  # a Monte-Carlo estimate of 0: either sign
    assert int(vae.active_units(mu)) == 0


def test_mutual_information_of_a_linear_gaussian_encoder():
    # x ~ N(0, 1), q(z|x) = N(a x, s^2): q(z) = N(0, a^2 + s^2), I = 0.5 log(1 + a^2 / s^2)
    kx, kz = jax.random.split(jax.random.key(1))
    n, a, s = 4000, 1.5, 0.8
    x = jax.random.normal(kx, (n, 1))
    mu, logvar = a * x, jnp.full((n, 1), 2 * math.log(s))
    z = mu + s * jax.random.normal(kz, (n, 1))
    exact = 0.5 * math.log(1 + a**2 / s**2)
    np.testing.assert_allclose(float(vae.mutual_information(mu, logvar, z)), exact, atol=0.05)


def test_minibatch_mutual_information_is_bounded_by_log_batch():
    # a perfectly informative encoder: the estimate saturates at log B per minibatch (up to
    # the Monte-Carlo error of E log q(z|x), standard deviation 1 / sqrt(N) here)
    kx, kz = jax.random.split(jax.random.key(2))
    n = 4096
    mu = 100.0 * jax.random.normal(kx, (n, 2))
    logvar = jnp.full((n, 2), -12.0)
    z = mu + jnp.exp(-6.0) * jax.random.normal(kz, (n, 2))
    np.testing.assert_allclose(
        float(vae.minibatch_mutual_information(mu, logvar, z, 16)), math.log(16), atol=0.05
    )
    np.testing.assert_allclose(float(vae.mutual_information(mu, logvar, z)), math.log(n), atol=0.05)


def test_active_units_counts_dimensions_with_variance_above_threshold():
    mu = jax.random.normal(jax.random.key(3), (5000, 4)) * jnp.sqrt(
        jnp.array([[1.0, 0.03, 0.002, 0.0]])
    )
    assert int(vae.active_units(mu)) == 2


def test_gaussian_kl_and_log_density_match_closed_forms():
    mu, logvar = jnp.array([0.5, -1.0]), jnp.array([0.3, -0.7])
    var = np.exp(np.asarray(logvar))
    kl = 0.5 * np.sum(np.asarray(mu) ** 2 + var - np.asarray(logvar) - 1)
    np.testing.assert_allclose(float(vae.gaussian_kl(mu, logvar)), kl, rtol=1e-6)
    z = jnp.array([0.1, 0.2])
    ref = scipy.stats.norm.logpdf(np.asarray(z), np.asarray(mu), np.sqrt(var)).sum()
    np.testing.assert_allclose(float(vae.gaussian_log_density(z, mu, logvar)), ref, rtol=1e-5)


def linear_gaussian(w=2.0, sigma=0.5, x=1.3):
    """p(z) = N(0, 1), p(x|z) = N(w z, sigma^2): closed-form marginal and posterior."""
    log_lik = lambda z: jnp.sum(  # noqa: E731
        jax.scipy.stats.norm.logpdf(x, w * z, sigma)
    )
    marginal = scipy.stats.norm.logpdf(x, 0.0, math.sqrt(w**2 + sigma**2))
    post_var = sigma**2 / (w**2 + sigma**2)
    post_mean = w * x / (w**2 + sigma**2)
    return log_lik, marginal, post_mean, post_var


def test_importance_sampling_is_exact_with_the_true_posterior_as_proposal():
    log_lik, marginal, m, v = linear_gaussian()
    est = vae.importance_log_marginal(
        log_lik, jnp.array([m]), jnp.array([math.log(v)]), jax.random.key(4), 50, 10
    )
    np.testing.assert_allclose(float(est), marginal, rtol=1e-5)


def test_importance_sampling_tightens_towards_the_marginal_with_more_samples():
    log_lik, marginal, m, v = linear_gaussian()
    mu, logvar = jnp.array([m + 0.2]), jnp.array([math.log(2 * v)])  # a poorer proposal
    key = jax.random.key(5)
    one = jax.jit(jax.vmap(lambda k: vae.importance_log_marginal(log_lik, mu, logvar, k, 1)))
    elbo = float(jnp.mean(one(jax.random.split(key, 200))))
    est = float(vae.importance_log_marginal(log_lik, mu, logvar, key, 20000, 2000))
    assert elbo < marginal - 0.05  # K = 1 is the ELBO, a strict bound here
    np.testing.assert_allclose(est, marginal, atol=0.005)


def test_posterior_mean_on_a_grid_matches_the_closed_form():
    log_lik, _, m, _ = linear_gaussian()
    grid = jnp.arange(-20.0, 20.0 + 1e-6, 0.1)[:, None]
    np.testing.assert_allclose(float(vae.posterior_mean_on_grid(log_lik, grid)[0]), m, atol=1e-4)
    # two dimensions, the likelihood on the first only: the second stays at the prior mean 0
    g = jnp.stack(jnp.meshgrid(jnp.arange(-6, 6.01, 0.1), jnp.arange(-6, 6.01, 0.1)), -1).reshape(
        -1, 2
    )
    mean = vae.posterior_mean_on_grid(lambda z: log_lik(z[:1]), g)
    np.testing.assert_allclose(np.asarray(mean), [m, 0.0], atol=1e-3)


def test_kl_weight_anneals_linearly_then_stays_at_one():
    cfg = dataclasses.replace(TINY, kl_start=0.1, warm_up_epochs=2.0)  # 20 iterations/epoch
    beta = [float(vae.kl_weight(cfg, jnp.int32(t))) for t in (0, 19, 38, 39, 100)]
    np.testing.assert_allclose(
        beta, [0.1 + 0.9 / 40, 0.1 + 0.9 * 20 / 40, 0.1 + 0.9 * 39 / 40, 1.0, 1.0], rtol=1e-6
    )
    assert float(vae.kl_weight(TINY, jnp.int32(0))) == 1.0


# ----------------------------------------------------------------------------- models


def test_text_encoder_that_ignores_x_gives_zero_kl_mi_and_au():
    state = init(jax.random.key(0), TINY)
    enc = dict(state.enc, out=jnp.zeros_like(state.enc["out"]))  # mu = logvar = 0 for all x
    state = state._replace(enc=enc)
    out = jax.jit(vae.evaluate, static_argnums=1)(
        state, dataclasses.replace(TINY, iw_samples=0), jax.random.key(1)
    )
    assert float(out["kl"]) == 0.0 and float(out["au"]) == 0.0
    # an estimate of 0 from 64 examples (standard deviation about 1 / sqrt(64) here)
    assert abs(float(out["mi"])) < 0.4 and abs(float(out["mi_batch"])) < 0.4
    assert "nll" not in out


def _np_lstm(xs, h, c, p):
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    out = []
    for x in xs:
        g = x @ p["w_ih"] + h @ p["w_hh"] + p["b"]
        i, f, u, o = np.split(g, 4)
        c = sig(f) * c + sig(i) * np.tanh(u)
        h = sig(o) * np.tanh(c)
        out.append(h)
    return np.stack(out)


def test_text_encoder_and_decoder_match_a_numpy_reference():
    cfg = dataclasses.replace(TINY, embed=5, hidden=4, latent=2)
    enc, dec = text.init_params(jax.random.key(3), cfg, 9)
    enc, dec = jax.tree.map(lambda a: a * 30.0, (enc, dec))  # away from the linear regime
    e = jax.tree.map(lambda a: np.asarray(a, np.float64), enc)
    d = jax.tree.map(lambda a: np.asarray(a, np.float64), dec)
    x = np.array([vae_data.BOS, 5, 7, 4, vae_data.EOS, vae_data.PAD, vae_data.PAD])
    n = 5  # tokens before the padding
    hs = _np_lstm(e["embed"][x[:n]], np.zeros(4), np.zeros(4), e["lstm"])
    mu, logvar = np.split(hs[-1] @ e["out"], 2)
    got = vae.encode(enc, jnp.asarray(x), cfg)
    np.testing.assert_allclose(np.asarray(got[0]), mu, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got[1]), logvar, rtol=1e-4, atol=1e-6)
    unrolled = vae.encode(enc, jnp.asarray(x), dataclasses.replace(cfg, unroll=3))
    np.testing.assert_allclose(np.asarray(unrolled[0]), np.asarray(got[0]), rtol=1e-5, atol=1e-7)
    z = np.array([0.7, -1.1])
    c0 = z @ d["trans"]
    inp = np.concatenate([d["embed"][x[: n - 1]], np.tile(z, (n - 1, 1))], axis=1)
    hs = _np_lstm(inp, np.tanh(c0), c0, d["lstm"])
    logits = hs @ d["out"]
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    ref = logp[np.arange(n - 1), x[1:n]].sum()  # the targets after <s>, </s> included
    got = vae.log_likelihood(
        dec, jnp.asarray(x), jnp.asarray(z, jnp.float32), jax.random.key(0), cfg
    )
    np.testing.assert_allclose(float(got), ref, rtol=1e-4)


def test_pixelcnn_logits_depend_only_on_earlier_pixels():
    cfg = dataclasses.replace(vae.PRESETS["mnist"], channels=4, pixel_layers=2, latent=3)
    _, dec = image.init_params(jax.random.key(4), cfg)
    x = (jax.random.uniform(jax.random.key(5), (28, 28)) < 0.3).astype(jnp.float32)
    z = jnp.array([0.1, 0.2, -0.3])
    logits = jax.jit(lambda x: vae.image_logits(dec, x, z, cfg).reshape(-1))
    base = np.asarray(logits(x))
    for q in (0, 27, 28 * 14 + 13, 783):  # flip pixel q (raster order)
        flipped = np.asarray(logits(x.reshape(-1).at[q].set(1 - x.reshape(-1)[q]).reshape(28, 28)))
        changed = np.abs(flipped - base) > 0
        assert not changed[: q + 1].any()  # the pixel itself and everything before it
        assert q == 783 or changed[q + 1 :].any()  # and it does inform later pixels


# ----------------------------------------------------------------------------- training


def run_steps(config, n, seeds=1, state=None):
    keys = jnp.stack([jax.random.key(s) for s in range(seeds)])
    axes = stabilizers.seed_axes(jax.eval_shape(vae.init, keys[0], config))
    if state is None:
        state = jax.vmap(vae.init, in_axes=(0, None), out_axes=axes)(keys, config)
    vstep = jax.vmap(vae.step, in_axes=(axes, None), out_axes=(axes, 0))
    run = jax.jit(lambda s: jax.lax.scan(lambda c, _: vstep(c, config), s, None, length=n))
    return run(state)


def test_a_tiny_basic_run_raises_the_elbo_through_the_harness():
    cfg = dataclasses.replace(TINY, iw_samples=0)
    result = harness.run(
        vae, cfg, iterations=60, seeds=2, segment_length=30, progress=False, plot=False
    )
    assert result.status == "completed"
    final = np.asarray(result.results["final"]["elbo"][0])
    states = result.states
    assert int(states.count.value) == 60  # shared, unbatched
    initial = jax.vmap(vae.evaluate, in_axes=(None, None, 0))(
        init(jax.random.key(0), cfg), cfg, jnp.stack([jax.random.key(0)])
    )["elbo"]
    assert np.all(final > float(initial[0]) + 5.0)  # about 72 nats at init (11 log 1004)


def test_aggressive_phase_runs_inner_loops_moves_the_decoder_only_and_switches_off():
    # The switch-off reference starts at +inf: the first epoch-end check (after 20
    # iterations) is a miss for every seed, so the phase ends there. Adam counts its
    # updates: while the phase is on, the encoder's count grows by the inner steps only
    # (no outer encoder step), the decoder's by one per outer step.
    cfg = dataclasses.replace(
        TINY,
        aggressive=True,
        inner_max_steps=6,
        inner_window=3,
        switch_initial=math.inf,
        optimizer="adam",
        learning_rate=1e-3,
        iw_samples=0,
    )
    state, m = run_steps(cfg, 22, seeds=2)
    inner = np.asarray(m["inner_steps"])  # [iteration, seed]
    assert np.all(inner[:20] >= 3) and np.all(inner[:20] <= 6)
    assert np.all(inner[20:] == 0)
    np.testing.assert_array_equal(np.asarray(m["aggressive"])[:20], 1.0)
    np.testing.assert_array_equal(np.asarray(m["aggressive"])[20:], 0.0)
    assert not np.any(np.asarray(state.switch.active))
    np.testing.assert_array_equal(np.asarray(state.switch.checks), [1, 1])
    assert np.all(np.asarray(m["mi_val"])[19:] != 0.0)  # measured at the epoch end
    count = lambda opt: np.asarray(optax.tree_utils.tree_get(opt, "count"))  # noqa: E731
    np.testing.assert_array_equal(count(state.enc_opt), inner.sum(0) + 2)  # + 2 joint steps
    np.testing.assert_array_equal(count(state.dec_opt), [22, 22])


def test_basic_mode_never_runs_the_inner_loop_and_updates_both():
    cfg = dataclasses.replace(TINY, iw_samples=0)
    state = init(jax.random.key(0), cfg)
    new, m = jax.jit(vae.step, static_argnums=1)(state, cfg)
    assert int(m["inner_steps"]) == 0 and float(m["aggressive"]) == 0.0
    for a, b in ((new.enc, state.enc), (new.dec, state.dec)):
        assert not all(jax.tree.leaves(jax.tree.map(jnp.array_equal, a, b)))


def test_image_setting_trains_and_evaluates():
    cfg = dataclasses.replace(
        vae.PRESETS["mnist"],
        channels=4,
        pixel_layers=1,
        latent=4,
        eval_examples=10,
        iw_samples=10,
        iw_chunk=10,
    )
    state = init(jax.random.key(0), cfg)
    new, m = jax.jit(vae.step, static_argnums=1)(state, cfg)
    assert np.isfinite(float(m["loss"])) and int(new.count.value) == 1
    out = jax.jit(vae.evaluate, static_argnums=1)(new, cfg, jax.random.key(0))
    assert 100 < float(out["nll"]) < 28 * 28 * math.log(2) + 50  # nats per binary image
    assert float(out["nll"]) <= -float(out["elbo"]) + 1.0  # IW tightens the ELBO


def authors_schedule(losses, patience=2, min_epoch=0):
    """toy.py / text.py's epoch-end logic in plain Python: (lr scale, decays, best) per epoch."""
    ref, best, not_improved, lr, decays, out = 1e4, 1e4, 0, 1.0, 0, []
    for epoch, loss in enumerate(losses):
        if loss < best:
            best = loss
        if loss > ref:
            not_improved += 1
            if not_improved >= patience and epoch >= min_epoch:
                ref, not_improved, lr, decays = loss, 0, lr * 0.5, decays + 1
        else:
            not_improved, ref = 0, loss
        out.append((lr, decays, best))
    return out


@pytest.mark.parametrize("min_epoch", [0, 4])
def test_learning_rate_schedule_follows_the_authors(min_epoch):
    cfg = dataclasses.replace(TINY, decay_min_epoch=min_epoch)
    losses = [50.0, 45.0, 46.0, 47.0, 44.0, 44.5, 45.0, 43.0, 44.0, 44.1, 44.2, 40.0]
    enc = {"w": jnp.zeros(2)}
    sched = vae.Schedule(
        best_enc=enc,
        best_dec=enc,
        best_loss=jnp.float32(1e4),
        reference=jnp.float32(1e4),
        not_improved=jnp.int32(0),
        lr_scale=jnp.float32(1.0),
        decays=jnp.int32(0),
        val_loss=jnp.float32(0.0),
    )
    for epoch, (loss, ref) in enumerate(
        zip(losses, authors_schedule(losses, 2, min_epoch), strict=True)
    ):
        params = {"w": jnp.full(2, float(epoch))}
        sched, e, _, reload = vae.update_schedule(
            sched, params, params, jnp.float32(loss), epoch, cfg
        )
        assert (float(sched.lr_scale), int(sched.decays), float(sched.best_loss)) == ref
        best_epoch = int(np.argmin(losses[: epoch + 1]))
        assert float(sched.best_enc["w"][0]) == best_epoch
        # a decay reloads the best params
        assert float(e["w"][0]) == (best_epoch if bool(reload) else epoch)


# ----------------------------------------------------------------------------- data


def test_synthetic_data_follow_the_authors_generator():
    spec = vae_data.SyntheticSpec()
    tok, z = vae_data.generate_synthetic(4000, spec, stream=7)
    chex.assert_shape(tok, (4000, 10))
    chex.assert_shape(z, (4000, 2))
    assert tok.min() >= 0 and tok.max() < 1000
    # z: four unit Gaussians at (+-2, +-2), equally likely
    quad = (z[:, 0] > 0).astype(int) * 2 + (z[:, 1] > 0)
    np.testing.assert_allclose(np.bincount(quad) / 4000, 0.25, atol=0.04)
    np.testing.assert_allclose(np.abs(z).mean(), 2.0, atol=0.1)
    # the first token is uniform; the same stream gives the same data
    assert len(np.unique(tok[:, 0])) > 900
    tok2, _ = vae_data.generate_synthetic(4000, spec, stream=7)
    np.testing.assert_array_equal(tok, tok2)
    # z carries information: the token after the first differs between z's components
    t = tok[:, 2]
    overlap = len(set(t[quad == 0]) & set(t[quad == 3])) / len(set(t[quad == 0]))
    assert overlap < 0.8


def test_synthetic_splits_are_wrapped_with_specials(tmp_path, monkeypatch):
    monkeypatch.setenv("STABILIZERS_DATA", str(tmp_path))
    data = vae_data.synthetic(40, 8, 8)
    chex.assert_shape(data.train, (40, 12))
    assert data.vocab_size == 1004
    assert np.all(data.train[:, 0] == vae_data.BOS) and np.all(data.train[:, -1] == vae_data.EOS)
    assert data.train[:, 1:-1].min() >= 4
    again = vae_data.synthetic(40, 8, 8)  # from the cache
    np.testing.assert_array_equal(again.test, data.test)
    assert not np.array_equal(data.train[:8], data.val)


def test_text_loader_reads_the_authors_format(tmp_path):
    (tmp_path / "d.train.txt").write_text("the cat sat\nthe dog\n\n")
    (tmp_path / "d.valid.txt").write_text("a cat\n")
    (tmp_path / "d.test.txt").write_text("the bird sat down\n")
    data = vae_data.load_text(*(str(tmp_path / f"d.{s}.txt") for s in ("train", "valid", "test")))
    assert data.vocab_size == 4 + 4  # the, cat, sat, dog + specials
    np.testing.assert_array_equal(data.train, [[1, 4, 5, 6, 2, 0], [1, 4, 7, 2, 0, 0]])
    np.testing.assert_array_equal(data.val, [[1, 3, 5, 2, 0, 0]])  # "a" is unknown
    np.testing.assert_array_equal(data.test, [[1, 4, 3, 6, 3, 2]])
    (tmp_path / "y.txt").write_text("3\tgood food\n1\tbad\n")
    lab = vae_data.load_text(*(str(tmp_path / "y.txt"),) * 3, label=True)
    np.testing.assert_array_equal(lab.train, [[1, 4, 5, 2], [1, 6, 2, 0]])
    cfg = vae.Config(data="text", data_path=str(tmp_path / "d"), embed=4, hidden=4)
    state = init(jax.random.key(0), cfg)
    assert state.dec["out"].shape == (4, 8)


def test_image_loaders_read_npz_and_omniglot_mat(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.random((7, 28, 28)).astype(np.float32)
    np.savez(tmp_path / "s.npz", x_train=imgs[:4].reshape(4, 784), x_val=imgs[4:5], x_test=imgs[5:])
    data = vae_data.load_image_file(str(tmp_path / "s.npz"))
    np.testing.assert_array_equal(data.train, imgs[:4])
    assert set(np.unique(data.val)) <= {0.0, 1.0} and data.test.shape == (2, 28, 28)
    # chardata.mat: columns are images flattened in Fortran order
    cols = np.stack([im.reshape(-1, order="F") for im in imgs], axis=1)
    scipy.io.savemat(tmp_path / "chardata.mat", {"data": cols[:, :5], "testdata": cols[:, 5:]})
    data = vae_data.load_image_file(str(tmp_path / "chardata.mat"), num_val=2)
    np.testing.assert_allclose(data.train, imgs[:3], rtol=1e-6)
    assert data.val.shape == (2, 28, 28) and data.test.shape == (2, 28, 28)
    np.savez(tmp_path / "bad.npz", x_train=imgs * 255, x_val=imgs[:1], x_test=imgs[:1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        vae_data.load_image_file(str(tmp_path / "bad.npz"))
    with pytest.raises(ValueError, match="npz or .mat"):
        vae_data.load_image_file(str(tmp_path / "x.png"))


def test_mnist_5k_splits_and_binarisation():
    data = vae_data.mnist_5k()
    chex.assert_shape(data.train, (4000, 28, 28))
    chex.assert_shape(data.val, (500, 28, 28))
    assert data.train.min() >= 0 and data.train.max() <= 1 and len(np.unique(data.train)) > 2
    assert set(np.unique(data.test)) == {0.0, 1.0}
    np.testing.assert_allclose(data.test.mean(), data.train.mean(), atol=0.02)


def test_bad_config_choices_fail_loudly():
    with pytest.raises(ValueError, match="optimizer"):
        vae.init(jax.random.key(0), dataclasses.replace(TINY, optimizer="rmsprop"))
    with pytest.raises(ValueError, match="data must be"):
        vae.init(jax.random.key(0), dataclasses.replace(TINY, data="cifar"))
