"""Consistency Training (CT / iCT): parameterisation, schedules, loss, sampler, data, metrics."""

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from data_testing import write_cifar10, write_idx

import stabilizers
from benchmarks import harness
from generative import consistency as ct
from generative import data as gdata
from generative import metrics as gmetrics

TINY = dict(width=16, depth=1, batch_size=32, total_steps=32 * 200, eval_samples=200)


def _perturbed(params, key, scale=0.3):
    """Random params with a non-zero output layer (at init F = 0 would make f trivial)."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        tree, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    )


@pytest.fixture(scope="module")
def mlp_setup():
    config = ct.Config(**TINY)
    state = ct.init(jax.random.key(0), config)
    return config, _perturbed(state.params, jax.random.key(1))


# --------------------------------------------------------------------------- parameterisation


def test_scalings_match_the_paper_and_boundary_is_exact():
    config = ct.Config()
    eps, sd = 0.002, 0.5
    for t in [0.002, 0.01, 1.0, 80.0]:
        c_skip, c_out, c_in = (float(v) for v in ct.scalings(jnp.float32(t), config))
        np.testing.assert_allclose(c_skip, sd**2 / ((t - eps) ** 2 + sd**2), rtol=1e-6)
        # t^2, not (t - eps)^2, under the root
        np.testing.assert_allclose(c_out, sd * (t - eps) / math.sqrt(sd**2 + t**2), rtol=1e-5)
        np.testing.assert_allclose(c_in, 1 / math.sqrt(t**2 + sd**2), rtol=1e-6)
    c_skip, c_out, _ = ct.scalings(jnp.float32(eps), config)
    assert float(c_skip) == 1.0 and float(c_out) == 0.0


def test_boundary_condition_holds_exactly_for_mlp_and_unet(mlp_setup):
    config, params = mlp_setup
    x = jax.random.normal(jax.random.key(2), (2,))
    t_min = ct.karras_sigma(0, 18, config)
    assert float(t_min) == np.float32(0.002)
    np.testing.assert_array_equal(ct.consistency_fn(params, x, t_min, config), x)
    assert not np.allclose(ct.consistency_fn(params, x, jnp.float32(1.0), config), x)

    img_config = ct.Config(data="digits", channels=(8, 8), batch_size=4)
    img_params = _perturbed(
        jax.jit(ct.init, static_argnums=1)(jax.random.key(3), img_config).params, jax.random.key(4)
    )
    img = jax.random.uniform(jax.random.key(5), (8, 8, 1), minval=-1, maxval=1)
    fn = jax.jit(ct.consistency_fn, static_argnums=3)
    out = fn(img_params, img, jnp.float32(0.002), img_config)
    np.testing.assert_array_equal(out, img)


def test_karras_grid_matches_formula_and_hits_both_ends():
    config = ct.Config()
    n = 11
    got = np.asarray(ct.karras_sigma(jnp.arange(n), n, config), np.float64)
    i = np.arange(n)
    want = (0.002 ** (1 / 7) + i / (n - 1) * (80 ** (1 / 7) - 0.002 ** (1 / 7))) ** 7
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got[0] == np.float32(0.002) and got[-1] == 80.0
    assert np.all(np.diff(got) > 0)


# --------------------------------------------------------------------------- schedules


def test_ct_schedules_follow_the_paper():
    k_total, s0, s1, mu0 = 1000, 2, 150, 0.9
    config = ct.Config(batch_size=1, total_steps=k_total, s0=s0, s1=s1, mu0=mu0)
    for k in [0, 1, 10, 250, 999, 1000]:
        n_paper = math.ceil(math.sqrt(k / k_total * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1) + 1
        assert int(ct.num_scales(k, config)) == n_paper, k
        mu_paper = math.exp(s0 * math.log(mu0) / n_paper)
        np.testing.assert_allclose(float(ct.target_decay(config)(k)), mu_paper, rtol=1e-6)
    assert abs(float(ct.target_decay(config)(0)) - 0.9) < 1e-6  # the paper, not 0.81


def test_ict_curriculum_doubles_in_equal_stages():
    config = dataclasses.replace(ct.PRESETS["ict"], batch_size=1, total_steps=400_000)
    got = [int(ct.num_scales(k, config)) for k in range(0, 400_001, 50_000)]
    assert got == [11, 21, 41, 81, 161, 321, 641, 1281, 1281]
    assert float(ct.target_decay(config)(12345)) == 0.0  # mu = 0: no target EMA


def test_target_decay_accepts_a_traced_mu0_for_vmapped_sweeps():
    config = ct.Config(batch_size=1, total_steps=100)
    mus = jnp.array([0.0, 0.5, 0.9])
    got = jax.vmap(lambda m: ct.target_decay(config.replace(mu0=m))(0))(mus)
    np.testing.assert_allclose(got, [0.0, 0.5, 0.9], rtol=1e-6)


def test_lognormal_index_distribution_matches_erf_masses():
    config = ct.PRESETS["ict"]
    n = 11
    idx = np.asarray(ct.sample_index(jax.random.key(0), n, config, (40_000,)))
    assert idx.min() >= 0 and idx.max() <= n - 2
    freq = np.bincount(idx, minlength=n - 1) / idx.size
    sig = np.asarray(ct.karras_sigma(jnp.arange(n), n, config), np.float64)
    erf = np.vectorize(math.erf)
    mass = erf((np.log(sig[1:]) + 1.1) / (math.sqrt(2) * 2.0)) - erf(
        (np.log(sig[:-1]) + 1.1) / (math.sqrt(2) * 2.0)
    )
    np.testing.assert_allclose(freq, mass / mass.sum(), atol=0.01)
    np.testing.assert_allclose(
        mass / mass.sum(),
        [0.063, 0.182, 0.246, 0.214, 0.142, 0.081, 0.041, 0.02, 0.009, 0.004],
        atol=0.0015,
    )
    uni = np.asarray(ct.sample_index(jax.random.key(1), n, ct.Config(), (2000,)))
    assert set(np.unique(uni)) == set(range(n - 1))  # n ~ U{0..N-2}: t_{n+1} exists


# --------------------------------------------------------------------------- loss


def test_loss_is_zero_when_online_and_target_agree_on_a_noise_free_pair():
    config = ct.Config(**{**TINY, "dropout": 0.5})
    params = _perturbed(ct.init(jax.random.key(0), config).params, jax.random.key(1))
    x, z = jnp.array([0.3, -0.2]), jnp.array([1.0, 0.5])
    t = jnp.float32(0.7)
    key = jax.random.key(7)
    for distance in ct.DISTANCES:
        cfg = config.replace(distance=distance)
        assert float(ct.consistency_loss(params, params, x, z, t, t, key, cfg)) == 0.0
    # the shared dropout key is what makes it zero: different masks give a non-zero loss
    f1 = ct.consistency_fn(params, x + t * z, t, config, jax.random.key(7))
    f2 = ct.consistency_fn(params, x + t * z, t, config, jax.random.key(8))
    assert not np.allclose(f1, f2)
    # the boundary pair: the target branch at eps returns its input exactly
    eps = jnp.float32(0.002)
    x_eps = x + eps * z
    loss = ct.consistency_loss(params, params, x, z, eps, jnp.float32(0.01), None, config)
    f_on = ct.consistency_fn(params, x + 0.01 * z, jnp.float32(0.01), config)
    np.testing.assert_allclose(loss, jnp.mean(jnp.square(f_on - x_eps)), rtol=1e-6)


def test_pseudo_huber_is_over_the_whole_vector_and_weights_follow_ict():
    config = ct.PRESETS["ict"]
    a = jnp.zeros((4, 4, 3))
    b = jnp.full((4, 4, 3), 0.1)
    c = 0.00054 * math.sqrt(48)
    want = math.sqrt(48 * 0.01 + c**2) - c
    np.testing.assert_allclose(ct.distance(a, b, config), want, rtol=1e-5)
    np.testing.assert_allclose(ct.distance(a, b, config.replace(distance="l2")), 0.01, rtol=1e-5)
    np.testing.assert_allclose(ct.distance(a, b, config.replace(distance="l1")), 0.1, rtol=1e-5)
    np.testing.assert_allclose(ct.weight(jnp.float32(1.0), jnp.float32(1.5), config), 2.0)
    assert float(ct.weight(jnp.float32(1.0), jnp.float32(1.5), ct.Config())) == 1.0


def test_target_never_receives_gradient(mlp_setup):
    config, params = mlp_setup
    target = _perturbed(params, jax.random.key(9), 0.1)
    x = jax.random.normal(jax.random.key(3), (8, 2))
    z = jax.random.normal(jax.random.key(4), (8, 2))
    t_n = jnp.full((8,), 0.5)
    t_np1 = jnp.full((8,), 0.8)
    grad = jax.jit(jax.grad(ct.batch_loss, argnums=(0, 1)), static_argnums=(6, 7))
    g_online, g_target = grad(params, target, x, z, t_n, t_np1, None, config)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(g_target))
    assert any(float(jnp.abs(g).max()) > 0.0 for g in jax.tree.leaves(g_online))


def test_step_moves_the_target_by_ema_only():
    config = ct.Config(**TINY, mu0=0.9)
    step = jax.jit(ct.step, static_argnums=1)
    state = jax.jit(ct.init, static_argnums=1)(jax.random.key(0), config)
    state, _ = step(state, config)
    state = state._replace(target=_perturbed(state.target, jax.random.key(1), 0.05))
    new, metrics = step(state, config)
    mu = float(ct.target_decay(config)(1))
    np.testing.assert_allclose(float(metrics["target_decay"]), mu, rtol=1e-6)
    want = jax.tree.map(lambda t, p: mu * t + (1 - mu) * p, state.target, new.params)
    chex.assert_trees_all_close(new.target, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["lag"], stabilizers.lag(new.params, new.target))
    assert int(new.count.value) == 2


# --------------------------------------------------------------------------- sampler


def test_sampler_shapes_and_determinism_per_key(mlp_setup):
    config, params = mlp_setup
    sample = jax.jit(ct.sample, static_argnums=(2, 3))
    one = sample(params, jax.random.key(0), config, 50)
    two = sample(params, jax.random.key(0), config, 50, (0.8,))
    chex.assert_shape([one, two], (50, 2))
    np.testing.assert_array_equal(one, sample(params, jax.random.key(0), config, 50))
    np.testing.assert_array_equal(two, sample(params, jax.random.key(0), config, 50, (0.8,)))
    assert not np.allclose(one, sample(params, jax.random.key(1), config, 50))
    assert not np.allclose(one, two)

    img_config = ct.Config(data="digits", channels=(8, 8), batch_size=4)
    img_params = _perturbed(
        jax.jit(ct.init, static_argnums=1)(jax.random.key(3), img_config).params, jax.random.key(4)
    )
    imgs = sample(img_params, jax.random.key(0), img_config, 3, (2.0, 0.5))
    chex.assert_shape(imgs, (3, 8, 8, 1))
    assert float(imgs.min()) >= -1.0 and float(imgs.max()) <= 1.0


# --------------------------------------------------------------------------- learning


def test_tiny_run_through_the_harness_learns_and_sweeps_mu0(tmp_path):
    config = ct.Config(**{**TINY, "width": 32, "depth": 2, "total_steps": 32 * 600})
    res = harness.run(
        ct,
        config,
        iterations=600,
        seeds=1,
        sweep={"mu0": [0.0, 0.9]},
        segment_length=100,
        eval_every=6,
        out_dir=tmp_path,
        checkpoint_every=100,
        progress=False,
        plot=False,
    )
    assert res.status == "completed"
    records = res.results
    log = harness.read_log(tmp_path)
    # per point, the final one-step samples are far closer to the data than at init
    first = np.asarray(harness.curve(log, "energy_1step_online", "iteration")[1][0])
    final = np.asarray(records["final"]["energy_1step_online"]).reshape(-1)
    assert final[0] < 0.5 * first[0], (first, final)  # mu0 = 0 (iCT's teacher) learns fastest
    assert np.all(final < first), (first, final)
    # and the training loss falls
    losses = np.asarray(harness.curve(log, "loss", "iteration", kind="train")[1])
    assert np.all(losses[-1] < losses[0]), losses[[0, -1]]
    # mu0 = 0: the target is the online params (lag 0); 0.9: it trails them
    lag = np.asarray(records["final_train"]["lag"]).reshape(-1)
    assert lag[0] == 0.0 and lag[1] > 0.0


# --------------------------------------------------------------------------- data, metrics


def test_toys_have_the_expected_shape_and_scale():
    for name in gdata.TOYS:
        x = gdata.sample_toy(jax.random.key(0), name, 4000)
        chex.assert_shape(x, (4000, 2))
        assert 0.25 < float(x.std()) < 0.8, name
        assert float(jnp.abs(x).max()) < 1.6, name
    with pytest.raises(ValueError, match="unknown toy"):
        gdata.sample_toy(jax.random.key(0), "spiral", 4)


def test_image_sets_read_mnist_and_cifar10_through_datasources(tmp_path):
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", digits)
    got = gdata.load_images("mnist", str(tmp_path))
    np.testing.assert_array_equal(got, digits[..., None])
    assert not got.flags.writeable

    images = rng.integers(0, 256, (6, 2, 32, 32, 3), dtype=np.uint8)
    write_cifar10(tmp_path / "cifar-10-python.tar.gz", images, np.zeros((6, 2), int))
    got = gdata.load_images("cifar10", str(tmp_path))  # the training images only
    np.testing.assert_array_equal(got, images[:5].reshape(10, 32, 32, 3))
    assert gdata.load_images("mnist5k").shape == (5000, 28, 28, 1)
    assert gdata.load_labels("mnist5k").tolist()[::500] == list(range(10))


def test_energy_and_frechet_distances_known_answers():
    x = jnp.array([[0.0, 0.0], [1.0, 0.0]])
    y = jnp.array([[0.0, 0.0], [0.0, 1.0]])
    assert float(gmetrics.energy_distance(x, x)) == pytest.approx(0.0, abs=1e-6)
    # 2 * mean|x - y| - mean|x - x'| - mean|y - y'| = 2 * (1 + sqrt2 + 0 + 1)/4 - 0.5 - 0.5
    want = 2 * (2 + math.sqrt(2)) / 4 - 1.0
    np.testing.assert_allclose(gmetrics.energy_distance(x, y), want, rtol=1e-5)

    rng = np.random.default_rng(0)
    f = rng.normal(size=(4000, 3)) * np.array([1.0, 2.0, 0.5])
    g = rng.normal(size=(4000, 3)) * np.array([2.0, 1.0, 0.5]) + np.array([1.0, 0.0, 0.0])
    s_f, s_g = np.cov(f, rowvar=False), np.cov(g, rowvar=False)
    w, v = np.linalg.eigh(s_f)
    root = (v * np.sqrt(w)) @ v.T
    cross = np.sqrt(np.linalg.eigvalsh(root @ s_g @ root)).sum()
    want = np.sum((f.mean(0) - g.mean(0)) ** 2) + np.trace(s_f + s_g) - 2 * cross
    np.testing.assert_allclose(gmetrics.frechet_distance(f, g), want, rtol=1e-3)
    assert abs(want - (1 + 1 + 1)) < 0.3  # the Gaussians' exact distance is 3


def test_harness_host_loop_matches_scan():
    # scan=False (one jitted step per call, for conv nets on CPU) gives the same run
    from benchmarks import toy

    kw = dict(iterations=30, seeds=2, segment_length=10, progress=False, plot=False)
    a = harness.run(toy, toy.Config(), **kw)
    b = harness.run(toy, toy.Config(), scan=False, **kw)
    np.testing.assert_allclose(a.states.online, b.states.online, rtol=1e-6)
    assert a.results["final_train"] == b.results["final_train"]


def test_ict_entry_point_has_the_ict_recipe():
    from benchmarks import algorithm

    entry = algorithm.load("ict")
    assert entry.module is ct and entry.config == ct.PRESETS["ict"] and entry.name == "ict"
    assert algorithm.load("ct").config == ct.Config()


def test_study_configs_are_presets_whose_schedules_span_the_run():
    from benchmarks import consistency_study as study

    got = {name: study.configs(name, 100) for name in study.STUDIES}
    assert list(got["compare"]) == ["compare_ct", "compare_ict"]
    small_ct = got["ablation"]["ablation_ct"]
    assert (small_ct.width, small_ct.depth, small_ct.batch_size) == (64, 2, 128)
    assert (small_ct.distance, small_ct.mu0, small_ct.curriculum) == ("l2", 0.9, "ct")
    small_ict = got["compare"]["compare_ict"]
    assert (small_ict.width, small_ict.mu0, small_ict.distance) == (64, 0.0, "pseudo_huber")
    bar = got["bar"]["bar_moons"]
    assert (bar.data, bar.mu0, bar.lr_schedule, bar.warmup) == ("moons", 0.0, "cosine", 1000)
    assert (bar.learning_rate, bar.fourier_scale) == (2e-3, 1.0)
    assert [c.data for c in got["toys"].values()] == ["gaussians", "checkerboard", "swiss_roll"]
    digits, mnist = got["digits"]["digits"], got["mnist5k"]["mnist5k"]
    assert (digits.channels, digits.batch_size, digits.eval_samples) == ((32, 64), 64, 898)
    assert (mnist.channels, mnist.batch_size, mnist.warmup) == ((32, 64, 64), 128, 500)
    assert digits.curriculum == mnist.curriculum == "ict"
    for runs in got.values():
        for config in runs.values():
            assert config.total_steps == 100 * config.batch_size
    with pytest.raises(ValueError, match="study"):
        study.configs("cifar", 10)


def test_image_evaluate_under_jit_embeds_the_real_reference(monkeypatch):
    # the real images' features and floor are computed outside the trace (no classifier on
    # constant images for XLA to fold) and equal the direct computation
    from generative import networks

    params = networks.Classifier().init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"]
    monkeypatch.setattr(gmetrics, "classifier", lambda name: (params, 0.0))
    gmetrics.real_reference.cache_clear()
    try:
        config = ct.Config(data="digits", channels=(8, 8), batch_size=4, eval_samples=100)
        state = jax.jit(ct.init, static_argnums=1)(jax.random.key(1), config)
        got = jax.jit(ct.evaluate, static_argnums=1)(state, config, jax.random.key(2))
        real_a, real_b = gmetrics.real_halves("digits")
        want = gmetrics.frechet_distance(
            gmetrics.classifier_features("digits", jnp.asarray(real_a[:100])),
            gmetrics.classifier_features("digits", jnp.asarray(real_b[:100])),
        )
        np.testing.assert_allclose(got["frechet_floor"], want, rtol=1e-3)
        assert all(np.isfinite(float(v)) for v in got.values())
        # an untrained network's samples are far from the real images
        assert float(got["frechet_1step"]) > 2 * float(got["frechet_floor"])
    finally:
        gmetrics.real_reference.cache_clear()


def test_dropout_study_writes_both_rates_with_u_statistics_and_provenance(tmp_path, monkeypatch):
    import json

    from benchmarks import consistency_study as study

    configs = study.configs

    def tiny(name, iterations):
        return {
            k: dataclasses.replace(c, width=16, depth=1, batch_size=16, eval_samples=50)
            for k, c in configs(name, iterations).items()
        }

    monkeypatch.setattr(study, "configs", tiny)
    monkeypatch.setattr(study, "RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(study, "RESULTS", str(tmp_path / "results"))
    study.dropout(iterations=4, seeds=1)
    with open(tmp_path / "results" / "ict_dropout.json") as f:
        got = json.load(f)
    assert list(got["table"]) == ["dropout=0.0", "dropout=0.3"]
    row = got["table"]["dropout=0.3"]
    for metric in ("energy_1step", "energy_u_1step", "energy_u_2step", "energy_u_floor"):
        assert len(row[metric]) == 1 and np.isfinite(row[metric][0])
    assert len(row["mean_of_10_draws"]["energy_u_1step_mean"]) == 1
    assert got["configs"]["ict_dropout_0.3"]["dropout"] == 0.3
    assert "ratio = V(samples" in got["ratio_meaning"]
    assert got["provenance"]["command"] == got["command"]
