"""solvers.deepnet.train / probes / compare / checkpoint: losses against the loop references, augmentation, resume,
read-outs, the UFM comparison, and the digits target."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import ce_loss_loops, sc_loss_loops

from solvers.deepnet import checkpoint, compare, probes
from solvers.deepnet import encoders as deepnet
from solvers.deepnet.train import TrainConfig, augment, batch_loss, batches_of_epoch, tracker_for, train
from ufm import Problem, geometry
from ufm.tracker import RESERVED
from solvers.deepnet.data import Dataset

TINY = dict(arch="mlp", width=16, dim=8, epochs=3, batching="shuffled:8", probe=True)


def tiny_data(n=40, K=4, seed=0):
    """Separable synthetic 'images' (4 x 4 x 1): class c lights up pixel c."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % K
    x = rng.normal(0, 0.3, (n, 4, 4, 1)).astype(np.float32)
    x[np.arange(n), 0, y, 0] += 2.0
    yt = np.arange(n // 2) % K
    xt = rng.normal(0, 0.3, (n // 2, 4, 4, 1)).astype(np.float32)
    xt[np.arange(n // 2), 0, yt, 0] += 2.0
    info = {"name": "tiny", "K": K, "counts": np.bincount(y).tolist(), "n_train": n, "n_test": n // 2}
    return Dataset(x, y.astype(np.int32), xt, yt.astype(np.int32), info)


@pytest.mark.parametrize("loss", ["sc", "ce"])
@pytest.mark.slow
def test_padded_batch_loss_matches_the_loop_reference(loss):
    cfg = TrainConfig(loss=loss, bias=loss == "ce", tau=0.3, **{k: v for k, v in TINY.items() if k != "epochs"})
    enc = deepnet.encoder("mlp", width=16, dim=8)
    d = tiny_data()
    params = {"encoder": enc.init(jax.random.PRNGKey(0), (4, 4, 1))}
    if loss == "ce":
        params["head"] = deepnet.head_init(jax.random.PRNGKey(1), 4, 8, bias=True)
        params["head"]["b"] = jnp.arange(4.0) / 10
    row = np.array([3, 7, 11, 0, 4, 9, -1, -1])  # two padding slots
    valid = row >= 0
    safe = np.where(valid, row, 0)
    got = batch_loss(enc, cfg, params, d.x_train[safe], d.y_train[safe], jnp.asarray(valid), None)
    Z = np.asarray(enc.apply(params["encoder"], d.x_train[row[valid]]), dtype=np.float64)
    if loss == "sc":
        want = sc_loss_loops(geometry.normalize_rows(Z), d.y_train[row[valid]], 0.3)
    else:
        want = ce_loss_loops(Z, params["head"]["W"], d.y_train[row[valid]], params["head"]["b"])
    assert abs(float(got) - want) <= 1e-5 * max(1.0, abs(want))


@pytest.mark.slow
def test_augment_is_a_seeded_translation_and_flip():
    x = jnp.arange(2 * 8 * 8 * 1, dtype=jnp.float32).reshape(2, 8, 8, 1) + 1
    a = augment(jax.random.PRNGKey(3), x)
    assert a.shape == x.shape and np.array_equal(a, augment(jax.random.PRNGKey(3), x))
    xp = np.pad(np.asarray(x), [(0, 0), (1, 1), (1, 1), (0, 0)])
    for i in range(2):  # each output is the zero-padded input seen through a window shifted by <= 1
        windows = [xp[i, r:r + 8, c:c + 8] for r in range(3) for c in range(3)]
        assert any(np.array_equal(a[i], w) for w in windows)
    flips = [augment(jax.random.PRNGKey(k), x, flip=True) for k in range(8)]
    assert any(np.array_equal(f[0][:, ::-1], w) for f in flips
               for w in [xp[0, r:r + 8, c:c + 8] for r in range(3) for c in range(3)])


@pytest.mark.slow
def test_two_views_double_the_batch_and_stay_finite():
    cfg = TrainConfig(views=2, **{k: v for k, v in TINY.items() if k != "epochs"})
    enc = deepnet.encoder("mlp", width=16, dim=8)
    d = tiny_data()
    params = {"encoder": enc.init(jax.random.PRNGKey(0), (4, 4, 1))}
    valid = jnp.ones(8, bool)
    l1 = batch_loss(enc, cfg, params, d.x_train[:8], d.y_train[:8], valid, jax.random.PRNGKey(0))
    l2 = batch_loss(enc, cfg, params, d.x_train[:8], d.y_train[:8], valid, jax.random.PRNGKey(1))
    assert np.isfinite(float(l1)) and float(l1) != float(l2)  # the views depend on the key


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path):
    d = tiny_data()
    cfg = TrainConfig(**TINY)
    straight = train(cfg, data=d, progress=False)

    def stop_after_two(history):
        if len(history) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # after epoch 2 was logged, before its checkpoint was written
        train(cfg, data=d, out=str(tmp_path), checkpoint_every=1, progress=False, on_epoch=stop_after_two,
              tracker=tracker_for(cfg, out=str(tmp_path)))
    assert checkpoint.exists(tmp_path)
    calls = []

    def orthogonal_frame(counts, dim, **kw):
        calls.append(counts)
        return {"mean_cosines": np.eye(len(counts))}

    with tracker_for(cfg, out=str(tmp_path), reference=orthogonal_frame) as t:
        resumed = train(cfg, data=d, out=str(tmp_path), checkpoint_every=1, resume=True, progress=False, tracker=t)
    # the tracker restarted from the checkpoint's epoch 1 (no epoch twice) and asked the reference once
    assert [r["epoch"] for r in t.rows] == [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert (tmp_path / "history.jsonl").read_text().count("\n") == 3 and calls == [(10,) * 4]
    assert resumed.history[0]["distance_to_ufm"] is None  # the checkpoint's epoch, logged without a reference
    for r in resumed.history[1:]:  # against the orthogonal frame, the distance is delta_gm of the mean cosines
        C = np.asarray(r["mean_cosines"])
        assert r["distance_to_ufm"] == pytest.approx(geometry.gram_distance(C, np.eye(len(C))), abs=1e-12)
    a = jax.tree_util.tree_leaves(straight.params)
    b = jax.tree_util.tree_leaves(resumed.params)
    assert all(np.allclose(u, v, atol=1e-6) for u, v in zip(a, b))
    assert [r["train_loss"] for r in resumed.history] == pytest.approx([r["train_loss"] for r in straight.history])
    with pytest.raises(ValueError, match="tau"):
        train(cfg.replace(tau=0.2), data=d, out=str(tmp_path), resume=True, progress=False)


@pytest.mark.slow
def test_every_batching_scheme_trains():
    d = tiny_data()
    for scheme, steps in (("full", 1), ("fixed:16", 3), ("binding:12", 3), ("subsets:39", 40)):
        cfg = TrainConfig(**{**TINY, "epochs": 1, "batching": scheme, "probe": False})
        r = train(cfg, data=d, progress=False)
        assert r.steps == steps and np.isfinite(r.final["train_loss"]), scheme
    bound = batches_of_epoch(TrainConfig(batching="binding:12"), d.y_train, 3)
    assert all(set(range(4)) <= set(b.tolist()) for b in bound)  # the first example of every class, every batch


def test_checkpoint_round_trip_and_corrupt(tmp_path):
    tree = {"a": [np.arange(3.0), {"b": np.ones((2, 2), np.float32)}]}
    checkpoint.save(tmp_path, {"params": tree}, {"epoch": 4})
    back, meta = checkpoint.load(tmp_path, {"params": tree})
    assert meta["epoch"] == 4 and np.array_equal(back["params"]["a"][1]["b"], tree["a"][1]["b"])
    with pytest.raises(ValueError, match="shape"):
        checkpoint.load(tmp_path, {"params": {"a": [np.arange(4.0), {"b": np.ones((2, 2))}]}})
    (tmp_path / checkpoint.NPZ).write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read"):
        checkpoint.load(tmp_path, {"params": tree})


@pytest.mark.slow
def test_probes_on_known_embeddings():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    Z = np.eye(3)[y] * 5 + rng.normal(0, 0.1, (60, 3))
    assert probes.ncc_accuracy(Z, y, Z, y, 3) == 1.0
    assert probes.accuracy(probes.linear_probe(Z, y, Z, 3), y) == 1.0
    wrong = (y + 1) % 3
    assert probes.ncc_accuracy(Z, y, Z, wrong, 3) == 0.0


@pytest.mark.slow
def test_training_fits_separable_data_and_records_every_epoch():
    d = tiny_data()
    # CE without the final ReLU: a width-16 CE net with one can lose a whole class to dead units
    for loss, relu in (("sc", True), ("ce", False)):
        r = train(TrainConfig(loss=loss, nonneg=relu, **{**TINY, "epochs": 8}), data=d, progress=False)
        assert len(r.history) == 8 and r.steps == 8 * 5
        assert r.final["train_accuracy"] == 1.0 and r.final["test_accuracy"] == 1.0
        assert r.steps_to_fit is not None and r.steps_to_fit <= r.steps
        assert r.final["train_loss"] < r.history[0]["train_loss"]
        assert set(r.final) >= {"delta_gm", "nc1", "etf_distance", "geometry", "ncc_test_accuracy",
                                "probe_test_accuracy", "min_cosine"} | RESERVED  # a ufm.Tracker row
        assert r.final["normalization"] == "rows" and (r.final["nc3"] is None) == (loss == "sc")


def test_compare_maps_the_config_to_the_ufm():
    sc = compare.ufm_problem((5, 5, 2), TrainConfig(nonneg=True, tau=0.2), 3)
    assert sc == Problem(counts=(5, 5, 2), loss="sc", tau=0.2, dim=3, constraint="sphere", nonneg=True)
    ce = compare.ufm_problem((5, 5, 2), TrainConfig(loss="ce", nonneg=False, weight_decay=1e-3, bias=True), 3)
    assert (ce.constraint, ce.weight_decay, ce.feature_decay, ce.bias, ce.nonneg) == ("none", 1e-3, 1e-3, True, False)
    assert compare.scale_counts((3000, 3000, 300), 2000) == (952, 952, 95)
    assert compare.scale_counts((30, 3), 2000) == (30, 3)
    G = np.eye(3)
    out = compare.compare(G, (6, 6, 2), TrainConfig(nonneg=True, tau=0.5), dim=8)
    assert out["prediction"]["geometry"] == "of" and out["delta_gm"] < 1e-6 and out["distance_to_ufm"] < 1e-6
    assert abs(out["loss"] - out["prediction"]["loss"]) < 1e-8
    cert = out["certificate"]
    assert cert["certified"] and abs(cert["lower_bound"] - out["prediction"]["loss"]) <= 1e-6
    assert compare.compare(G, (6, 6, 2), TrainConfig(nonneg=True, tau=0.5), dim=8, certify=False)["certificate"] is None
    groups = compare.cosine_groups(np.array([[1, .1, .2], [.1, 1, .3], [.2, .3, 1]]), (10, 10, 2))
    assert groups == {"maj_maj": .1, "maj_min": pytest.approx(.25), "min_min": None}


def test_gram_distance_is_delta_gm_against_the_identity():
    G = np.array([[1.0, 0.3], [0.3, 1.0]])
    Z = np.array([[1.0, 0.0], [0.3, np.sqrt(1 - 0.09)]])
    assert geometry.gram_distance(G, np.eye(2)) == pytest.approx(geometry.delta_gm(Z, [0, 1]))
    assert geometry.gram_distance(G, 3 * G) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.slow
def test_digits_step10_binding_sc_reaches_the_orthogonal_frame_with_relu():
    """The digits target (docs/theory.md §4-4.3): an MLP on digits, STEP R = 10, SC tau = 0.1, binding:64, ReLU:
    the class means approach the orthogonal frame (delta_gm <= 0.1) with test accuracy >= 0.85; without the
    ReLU the geometry stays far from it (delta_gm >= 0.3)."""
    pytest.importorskip("sklearn")
    cfg = TrainConfig(dataset="digits", arch="mlp", loss="sc", nonneg=True, imbalance="step:10",
                      batching="binding:64", epochs=60, seed=0, probe=False)
    r = train(cfg, progress=False)
    assert r.final["delta_gm"] <= 0.1 and r.final["test_accuracy"] >= 0.85
    assert r.final["min_cosine"] >= 0  # ReLU features: no negative cosine
    r = train(cfg.replace(nonneg=False, epochs=20), progress=False)
    assert r.final["delta_gm"] >= 0.3 and r.final["min_cosine"] < 0
