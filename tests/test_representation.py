"""BYOL and MoCo: schedules, stop-gradients, augmentations, the queue, data, probes, learning."""

import dataclasses
import os
import tarfile

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from data_testing import write_cifar10

import stabilizers
from benchmarks import harness
from representation import augment, byol, common, data, evaluation, moco, networks

TINY = data.DataSpec(num_train=256, num_test=128)


def tiny(module, **kw):
    kw.setdefault("batch_size", 32)
    kw.setdefault("total_steps", 32 * 40)
    return module.Config(
        data=TINY, probe_train=128, calibration=64, hidden_dim=64, projection_dim=32, **kw
    )


def init(module, config):
    """`module.init` jitted: one program instead of op-by-op dispatch, a third of the time."""
    return jax.jit(module.init, static_argnums=1)(jax.random.key(0), config)


def views(config, seed=0):
    return common.two_views(jax.random.key(seed), config)


# --------------------------------------------------------------------------- schedules


def test_byol_target_follows_the_cosine_schedule_from_base_to_one():
    k = 50
    schedule = stabilizers.schedules.cosine_momentum(0.996, k)
    chex.assert_trees_all_close(schedule(0), 0.996, rtol=0, atol=1e-7)
    chex.assert_trees_all_close(schedule(k // 2), 0.998, atol=1e-7)
    chex.assert_trees_all_close(schedule(k), 1.0, atol=0)
    chex.assert_trees_all_close(schedule(10 * k), 1.0, atol=0)
    # byol's target moves by (1 - tau_k) of the gap: 0.004 at the first step, 0 at the last
    config = tiny(byol, base_momentum=0.996, total_steps=32 * k)
    tx = byol._target_tx(config, 0)
    online, target = jnp.ones(3), jnp.zeros(3)
    state = tx.init(target)
    moved, state = stabilizers.update_target(tx, online, target, state)
    chex.assert_trees_all_close(moved, jnp.full(3, 0.004), atol=1e-6)
    state = state._replace(count=stabilizers.shared_count(k))
    moved, _ = stabilizers.update_target(tx, online, target, state)
    chex.assert_trees_all_close(moved, jnp.zeros(3), atol=0)
    # v3's key encoder: the same schedule from 0.99; v2's: constant
    v3 = moco.momentum_schedule(tiny(moco, version="v3", momentum=0.99, total_steps=32 * k))
    assert abs(float(v3(0)) - 0.99) < 1e-7 and float(v3(k)) == 1.0
    v2 = moco.momentum_schedule(tiny(moco, version="v2", momentum=0.999, queue_size=64))
    assert abs(float(v2(0)) - 0.999) < 1e-7 and abs(float(v2(k)) - 0.999) < 1e-7


# --------------------------------------------------------------------------- stop-gradient


@pytest.mark.parametrize(
    "module, kw",
    [(byol, {}), (moco, {"version": "v2", "queue_size": 64}), (moco, {"version": "v3"})],
)
def test_no_gradient_reaches_the_target_branch(module, kw):
    config = tiny(module, **kw)
    state = init(module, config)
    # a target different from the online params, so that both branches matter
    target = jax.tree.map(lambda x: x * 1.5 + 0.1, state.target)
    v1, v2 = views(config)
    if module is byol:
        args = (state.online, target, v1, v2, config)
        loss = lambda o, t: byol.loss_fn(o, t, *args[2:])[0]  # noqa: E731
    else:
        perm = jnp.arange(config.batch_size)[::-1]
        loss = lambda o, t: moco.loss_fn(o, t, state.queue, v1, v2, perm, config)[0]  # noqa: E731
    loss = jax.jit(loss)  # one program, not hundreds of op-by-op dispatches
    g_online, g_target = jax.jit(jax.grad(loss, argnums=(0, 1)))(state.online, target)
    for leaf in jax.tree.leaves(g_target):
        chex.assert_trees_all_equal(leaf, jnp.zeros_like(leaf))
    assert sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree.leaves(g_online["encoder"])) > 0
    # and the target does change the loss (it is used, not ignored)
    assert float(loss(state.online, target)) != float(loss(state.online, state.online))


# --------------------------------------------------------------------------- augmentations


def test_augmentations_are_deterministic_per_key_and_differ_across_keys():
    images = augment.to_float(data.gather(TINY, "train", jnp.arange(4)))
    params = augment.Augment(rotation=10.0)
    aug = jax.jit(augment.augment, static_argnums=3)
    a = aug(jax.random.key(1), images[0], params, 0)
    b = aug(jax.random.key(1), images[0], params, 0)
    c = aug(jax.random.key(2), images[0], params, 0)
    chex.assert_trees_all_equal(a, b)
    assert float(jnp.mean(jnp.abs(a - c))) > 1e-3
    chex.assert_shape(a, images[0].shape)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # a batch: one key per image, all different views of the same image
    batch = jax.jit(augment.augment_batch, static_argnums=3)(
        jax.random.key(3), jnp.stack([images[0]] * 4), params, 1
    )
    diffs = jnp.abs(batch[:, None] - batch[None]).mean(axis=(2, 3, 4))
    assert float(jnp.min(diffs + jnp.eye(4))) > 1e-3
    # colour images and the flip
    rgb = jnp.tile(images[1], (1, 1, 3))
    out = aug(jax.random.key(4), rgb, augment.Augment(flip_prob=1.0), 0)
    chex.assert_shape(out, rgb.shape)


def test_crop_of_the_whole_image_is_the_identity_and_blur_keeps_mass():
    image = jax.random.uniform(jax.random.key(0), (12, 12, 1))
    whole = augment.random_resized_crop(jax.random.key(1), image, min_scale=1.0)
    # area 1 with an aspect ratio != 1 crops one side only; the other is the identity
    h = augment._interpolation_matrix(12, 0.0, 12.0)
    chex.assert_trees_all_close(h, jnp.eye(12), atol=1e-6)
    chex.assert_shape(whole, image.shape)
    blurred = augment.gaussian_blur(jnp.ones((9, 9, 1)), 1.0)
    chex.assert_trees_all_close(blurred, jnp.ones((9, 9, 1)), atol=1e-6)


# --------------------------------------------------------------------------- the queue


def test_queue_is_first_in_first_out():
    queue = jnp.zeros((6, 2))
    ptr = jnp.asarray(0, jnp.int32)
    batches = [jnp.full((2, 2), float(i + 1)) for i in range(4)]
    for b in batches[:3]:
        queue, ptr = moco.enqueue(queue, ptr, b)
    chex.assert_trees_all_equal(queue[:, 0], jnp.array([1.0, 1, 2, 2, 3, 3]))
    assert int(ptr) == 0
    queue, ptr = moco.enqueue(queue, ptr, batches[3])  # replaces the oldest (batch 1)
    chex.assert_trees_all_equal(queue[:, 0], jnp.array([4.0, 4, 2, 2, 3, 3]))
    assert int(ptr) == 2
    with pytest.raises(ValueError, match="multiple"):
        moco.enqueue(jnp.zeros((5, 2)), ptr, batches[0])
    with pytest.raises(ValueError, match="multiple of batch_size"):
        moco.init(jax.random.key(0), tiny(moco, version="v2", queue_size=48))


def test_moco_v2_step_enqueues_its_keys_and_shares_the_pointer():
    config = tiny(moco, version="v2", queue_size=64)
    state = init(moco, config)
    new, _ = jax.jit(moco.step, static_argnums=1)(state, config)
    assert int(new.queue_ptr.value) == 32
    chex.assert_trees_all_equal(new.queue[32:], state.queue[32:])
    assert not np.allclose(new.queue[:32], state.queue[:32])
    chex.assert_trees_all_close(jnp.linalg.norm(new.queue, axis=-1), jnp.ones(64), atol=1e-5)
    axes = stabilizers.seed_axes(state)
    assert axes.queue_ptr is None and axes.queue == 0  # the pointer is not batched


# --------------------------------------------------------------------------- losses


def test_losses_match_their_formulas():
    x, y = jnp.array([3.0, 4.0]), jnp.array([4.0, 3.0])
    cos = 24.0 / 25.0
    chex.assert_trees_all_close(byol.regression_loss(x, y), 2 - 2 * cos, atol=1e-6)
    q = common.l2_normalize(jnp.array([1.0, 0.0]))
    k = common.l2_normalize(jnp.array([1.0, 1.0]))
    negs = common.l2_normalize(jnp.array([[0.0, 1.0], [-1.0, 0.0]]))
    t = 0.5
    logits = jnp.array([q @ k, q @ negs[0], q @ negs[1]]) / t
    expected = -(logits[0] - jax.scipy.special.logsumexp(logits))
    chex.assert_trees_all_close(moco.infonce_loss(q, k, negs, t), expected, atol=1e-6)
    qb = jax.random.normal(jax.random.key(0), (4, 3))
    kb = jax.random.normal(jax.random.key(1), (4, 3))
    qn, kn = common.l2_normalize(qb), common.l2_normalize(kb)
    ref = np.mean([-jax.nn.log_softmax(qn[i] @ kn.T / t)[i] for i in range(4)]) * 2 * t
    chex.assert_trees_all_close(moco.contrastive_loss(qb, kb, t), ref, atol=1e-5)
    # collapse signal: 0 for identical embeddings, 1/sqrt(d)-ish for random ones
    assert float(common.normalized_std(jnp.ones((8, 4)))) == 0.0
    z = jax.random.normal(jax.random.key(2), (4096, 16))
    assert abs(float(common.normalized_std(z)) - 0.25) < 0.01


# --------------------------------------------------------------------------- networks


def test_conv_and_batch_norm_match_their_references():
    x = jax.random.normal(jax.random.key(0), (2, 7, 7, 3))
    conv = networks.Conv3x3(5, stride=2)
    params = conv.init(jax.random.key(1), x)["params"]
    reference = jax.lax.conv_general_dilated(
        x,
        params["kernel"].reshape(3, 3, 3, 5),
        (2, 2),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    chex.assert_trees_all_close(conv.apply({"params": params}, x), reference, atol=1e-5)
    bn = networks.BatchNorm(groups=2)
    h = jax.random.normal(jax.random.key(2), (8, 3)) * 3 + 1
    p = bn.init(jax.random.key(3), h, "train")["params"]
    y = bn.apply({"params": p}, h, "train")
    chex.assert_trees_all_close(y[:4].mean(0), jnp.zeros(3), atol=1e-5)
    chex.assert_trees_all_close(y[4:].std(0), jnp.ones(3), atol=1e-3)
    # calibrate then eval on the same batch = whole-batch normalisation
    enc = networks.Encoder((4, 6), (2, 1))
    img = jax.random.uniform(jax.random.key(4), (16, 8, 8, 1))
    ep = enc.init(jax.random.key(5), img)["params"]
    _, stats = enc.apply({"params": ep}, img, "calibrate", mutable=["batch_stats"])
    chex.assert_trees_all_close(
        enc.apply({"params": ep, **stats}, img, "eval"),
        enc.apply({"params": ep}, img, "train"),
        atol=1e-4,
    )


# --------------------------------------------------------------------------- evaluation


def test_probes_score_separable_features_perfectly_and_noise_at_chance():
    key_x, key_y, key_n = jax.random.split(jax.random.key(0), 3)
    y = jax.random.randint(key_y, (400,), 0, 4)
    centres = 5.0 * jnp.eye(8)[:4]
    x = centres[y] + jax.random.normal(key_x, (400, 8))
    acc = evaluation.probe_metrics(x[:300], y[:300], x[300:], y[300:], num_classes=4)
    assert float(acc["linear_probe"]) == 1.0 and float(acc["knn"]) == 1.0
    noise = jax.random.normal(key_n, (400, 8))
    acc = evaluation.probe_metrics(noise[:300], y[:300], noise[300:], y[300:], num_classes=4)
    assert float(acc["linear_probe"]) < 0.45 and float(acc["knn"]) < 0.45


# --------------------------------------------------------------------------- data


def test_cluttered_mnist_is_deterministic_and_keeps_train_and_test_digits_apart():
    a, b = data.load(TINY), data.cluttered_mnist(256, 128, seed=0, fragments=2)
    chex.assert_trees_all_equal(a.train.images, b.train.images)
    assert a.train.images.shape == (256, 28, 28, 1) and a.train.images.dtype == np.uint8
    assert a.test.images.shape == (128, 28, 28, 1)
    other = data.cluttered_mnist(256, 128, seed=1, fragments=2)
    assert not np.array_equal(a.train.images, other.train.images)
    assert set(np.unique(a.train.labels)) == set(range(10))
    # no test image is a training image (different digits): far apart in pixels
    tr = a.train.images.reshape(256, -1).astype(np.float32)
    te = a.test.images.reshape(128, -1).astype(np.float32)
    assert np.min(((tr[:, None] - te[None]) ** 2).sum(-1)) > 0


def test_cifar10_data_set_is_read_from_its_archive_and_served_by_gather(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 3, 32, 32, 3), dtype=np.uint8)
    write_cifar10(tmp_path / "cifar-10-python.tar.gz", images, np.tile(np.arange(3), (6, 1)))
    spec = data.DataSpec(name="cifar10", root=str(tmp_path))
    ds = data.load(spec)
    assert ds.train.images.shape == (15, 32, 32, 3) and ds.test.images.shape == (3, 32, 32, 3)
    assert ds.train.labels.tolist() == [0, 1, 2] * 5
    got = data.gather(spec, "test", jnp.array([2, 0]))
    chex.assert_trees_all_equal(np.asarray(got), images[5][[2, 0]])
    with pytest.raises(FileNotFoundError, match="download"):
        data.load(data.DataSpec(name="cifar10", root=str(tmp_path / "missing")))


def test_stl10_loader_reads_column_major_binaries_and_resizes(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
        # the file layout: per image, channel-major, then column-major within a channel
        chw = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        np.ascontiguousarray(chw.transpose(0, 1, 3, 2)).tofile(folder / f"{split}_X.bin")
        np.arange(1, n + 1, dtype=np.uint8).tofile(folder / f"{split}_y.bin")
        if split == "train":
            expected = chw
    ds = data.load_stl10(str(tmp_path))
    assert ds.train.images.shape == (4, 96, 96, 3)
    chex.assert_trees_all_equal(ds.train.images[1, 10, 20], expected[1, :, 10, 20])
    assert ds.train.labels.tolist() == [0, 1, 2, 3]
    small = data.load_stl10(str(tmp_path), image_size=32)
    assert small.test.images.shape == (2, 32, 32, 3)


def test_stl10_is_fetched_and_extracted_when_missing(tmp_path, monkeypatch):
    source = tmp_path / "source" / "stl10_binary"
    source.mkdir(parents=True)
    for split in ("train", "test"):
        np.zeros((2, 3, 96, 96), np.uint8).tofile(source / f"{split}_X.bin")
        np.ones(2, np.uint8).tofile(source / f"{split}_y.bin")
    archive = tmp_path / "stl10_binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="stl10_binary")
    monkeypatch.setattr(data, "STL10_URLS", (archive.as_uri(),))
    root = tmp_path / "data"
    with pytest.raises(FileNotFoundError, match="download=True"):
        data.load_stl10(str(root))
    ds = data.load_stl10(str(root), download=True)
    assert ds.train.images.shape == (2, 96, 96, 3) and ds.test.labels.tolist() == [0, 0]


# --------------------------------------------------------------------------- learning


def test_byol_tiny_run_through_the_harness_loss_falls(tmp_path):
    config = tiny(byol, total_steps=32 * 60, learning_rate=3e-3)
    res = harness.run(
        byol,
        config,
        iterations=60,
        seeds=2,
        sweep={"base_momentum": [0.0, 0.99]},
        segment_length=20,
        out_dir=tmp_path,
        progress=False,
        plot=False,
    )
    assert res.status == "completed"
    _, loss = harness.curve(harness.read_log(tmp_path), "loss", "samples", kind="train")
    assert loss.shape == (3, 4) and np.all(loss[-1] < loss[0] - 0.2), loss
    for name in ("linear_probe", "knn", "feature_std"):
        assert np.shape(res.results["final"][name]) == (2, 2)
    for name in ("lag", "momentum", "embedding_std", "projection_std"):
        assert name in res.results["final_train"]


def test_moco_v3_tiny_run_loss_falls():
    config = tiny(moco, version="v3", total_steps=32 * 40, learning_rate=3e-3)
    state = init(moco, config)
    run = jax.jit(lambda s: jax.lax.scan(lambda s, _: moco.step(s, config), s, None, length=40))
    _, metrics = run(state)
    loss = np.asarray(metrics["loss"])
    assert loss[-10:].mean() < loss[:10].mean() - 0.1, loss


# --------------------------------------------------------------------------- presets, study


def test_presets_and_the_study_runs_are_configs_of_their_modules():
    from benchmarks import ssl_study

    for module in (byol, moco):
        assert isinstance(module.PRESETS["smoke"], module.Config)
        assert module.PRESETS["smoke"].data.num_train == 128
    assert moco.PRESETS["v2"].version == "v2" and moco.PRESETS["v3"] == moco.Config()
    args = ssl_study.parse_args(["compare", "--batch-size", "64", "--runs", "r"])
    assert args.total_steps == 64 * 1500
    runs = ssl_study.compare_runs(args)
    budget = dict(total_steps=64 * 1500, batch_size=64)
    assert [r.name for r in runs] == ["byol", "moco_v2", "moco_v3"]
    assert runs[0].config == byol.Config(**budget)
    assert runs[1].config == moco.Config(version="v2", augment=augment.MOCO_V2, **budget)
    assert runs[2].config == moco.Config(version="v3", **budget)
    assert runs[1].out_dir == os.path.join("r", "ssl_compare", "moco_v2")
    runs = ssl_study.ablation_runs(ssl_study.parse_args(["ablation", "--total-steps", "640"]))
    assert [r.config.use_predictor for r in runs] == [True, False]
    assert all(r.config.total_steps == 640 and r.config.batch_size == 256 for r in runs)
    assert runs[1].sweep == {"base_momentum": list(ssl_study.MOMENTA)}
    with pytest.raises(SystemExit) as usage:  # one line naming the flag, exit status 2
        ssl_study.main(["ablation", "--only", "nope"])
    assert usage.value.code == 2
    runs = ssl_study.blur_runs(ssl_study.parse_args(["blur", "--total-steps", "640"]))
    assert [r.config.augment.blur_prob for r in runs] == [(1.0, 0.1), (0.5, 0.5)]
    for r in runs:  # MoCo v2's preset at the budget, only the blur changed
        assert r.config.version == "v2" and r.config.total_steps == 640
        assert dataclasses.replace(r.config.augment, blur_prob=(0.5, 0.5)) == augment.MOCO_V2


def test_blur_recipes_byol_asymmetric_moco_v2_symmetric():
    assert augment.Augment().blur_prob == (1.0, 0.1)  # BYOL's default, also MoCo v3's
    assert augment.MOCO_V2 == augment.Augment(blur_prob=(0.5, 0.5))
    assert moco.PRESETS["v2"].augment == augment.MOCO_V2
    assert moco.PRESETS["v3"].augment == byol.Config().augment == augment.Augment()
    # the share of views the blur changes: the same keys with the blur off are the reference
    # (sigma up to 3 pixels: only sigma < ~0.3, a tenth of draws, leaves an image as it was)
    images = augment.to_float(data.gather(TINY, "train", jnp.arange(64)))
    images = jnp.tile(images, (4, 1, 1, 1))
    aug = jax.jit(augment.augment_batch, static_argnums=3)

    def blurred_share(blur_prob, view):
        params = augment.Augment(blur_sigma=3.0, blur_prob=blur_prob)
        off = dataclasses.replace(params, blur_prob=(0.0, 0.0))
        key = jax.random.key(view)
        diff = jnp.abs(aug(key, images, params, view) - aug(key, images, off, view))
        return float(jnp.mean(jnp.max(diff, axis=(1, 2, 3)) > 1e-4))

    for view in (0, 1):
        assert 0.35 < blurred_share((0.5, 0.5), view) < 0.6, view
    byol_view1, byol_view2 = blurred_share((1.0, 0.1), 0), blurred_share((1.0, 0.1), 1)
    assert byol_view1 > 0.8 and byol_view2 < 0.2


def test_configs_share_the_base_fields_and_keep_flat_flags():
    shared = {f.name for f in dataclasses.fields(common.SSLConfig)}
    for module in (byol, moco):
        names = [f.name for f in dataclasses.fields(module.Config)]
        assert shared <= set(names) and len(names) == len(set(names))
    config = tiny(moco, version="v2", queue_size=64, learning_rate=0.5)
    assert config.learning_rate in jax.tree.leaves(config)  # a float field stays a leaf
    assert common.iterations(config) == 40 and common.units(config) == ("samples", 32)
