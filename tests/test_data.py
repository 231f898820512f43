"""solvers.deepnet.data: IDX and CIFAR files written here (valid and corrupt), split, imbalance, label noise, digits."""
import gzip
import os
import pickle
import struct

import numpy as np
import pytest

from solvers.deepnet import data
from ufm import imbalance
from solvers.deepnet.data import DataError


def write_idx(path, arr, code=0x08):
    arr = np.asarray(arr)
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw = head + arr.astype(np.dtype(data._IDX_TYPES[code])).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as fh:
        fh.write(raw)
    return raw


def write_mnist(folder, n=20, nt=10, size=6, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n, size, size)),
              "train-labels-idx1-ubyte": np.arange(n) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (nt, size, size)),
              "t10k-labels-idx1-ubyte": np.arange(nt) % 10}
    for name, a in arrays.items():
        write_idx(os.path.join(folder, name + (".gz" if gz else "")), a)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5
    p = tmp_path / ("x.idx" + (".gz" if gz else ""))
    write_idx(p, a, code=0x0C)
    out = data.read_idx(p)
    assert out.shape == (2, 3, 4) and np.array_equal(out, a)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_loader_reads_idx_files(tmp_path, gz):
    arrays = write_mnist(tmp_path / "FashionMNIST" / "raw", gz=gz)  # torchvision's layout
    ds = data.load("fashion-mnist", data_dir=str(tmp_path))
    assert ds.x_train.shape == (20, 6, 6, 1) and ds.x_test.shape == (10, 6, 6, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert np.array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])
    assert abs(ds.x_train.mean()) < 1e-5 and abs(ds.x_train.std() - 1) < 1e-4  # standardised on train
    raw = arrays["train-images-idx3-ubyte"].astype(np.float64)
    expect = (raw - raw.mean()) / raw.std()
    assert np.allclose(ds.x_train[..., 0], expect, atol=1e-5)
    with pytest.raises(DataError, match="missing"):
        data.load("mnist", data_dir=str(tmp_path))  # FashionMNIST files are not MNIST files


CORRUPT = [
    ("truncated", lambda raw: raw[:-3], "truncated"),
    ("trailing", lambda raw: raw + b"\x00", "longer than its header"),
    ("magic", lambda raw: b"\x01" + raw[1:], "magic"),
    ("type", lambda raw: raw[:2] + b"\x07" + raw[3:], "data type"),
    ("header", lambda raw: raw[:6], "truncated header"),
]


@pytest.mark.parametrize("name,mutate,word", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_corrupt_idx_files_raise_naming_the_file(tmp_path, name, mutate, word):
    write_mnist(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(mutate(p.read_bytes()))
    with pytest.raises(DataError, match=word) as e:
        data.load("mnist", data_dir=str(tmp_path))
    assert "train-images-idx3-ubyte" in str(e.value)


def test_idx_wrong_shapes_and_labels(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros((19,), int))  # one label short
    with pytest.raises(DataError, match="expected 20 labels"):
        data.load("mnist", data_dir=str(tmp_path))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.full((20,), 11))
    with pytest.raises(DataError, match="0..9"):
        data.load("mnist", data_dir=str(tmp_path))
    write_mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((10, 36), int))  # flat, not (n, H, W)
    with pytest.raises(DataError, match="shape"):
        data.load("mnist", data_dir=str(tmp_path))


def test_corrupt_gzip_is_a_data_error(tmp_path):
    write_mnist(tmp_path, gz=True)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(DataError, match="corrupt or truncated"):
        data.load("mnist", data_dir=str(tmp_path))


def test_no_data_dir_says_never_download():
    with pytest.raises(DataError, match="never downloads"):
        data.load("cifar10")


def write_cifar(folder, n=4, seed=0, key_type=bytes):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    out = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        x = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
        y = [(i * n + j) % 10 for j in range(n)]
        k = (lambda s: s.encode()) if key_type is bytes else (lambda s: s)
        with open(os.path.join(folder, name), "wb") as fh:
            pickle.dump({k("data"): x, k("labels"): y, k("batch_label"): "b"}, fh)
        out[name] = (x, y)
    return out


@pytest.mark.parametrize("key_type", [bytes, str])
def test_cifar10_loader(tmp_path, key_type):
    batches = write_cifar(tmp_path / "cifar-10-batches-py", key_type=key_type)
    x, y, xt, yt = data.load_cifar10(str(tmp_path))
    assert x.shape == (20, 32, 32, 3) and xt.shape == (4, 32, 32, 3) and x.dtype == np.uint8
    raw, labels = batches["data_batch_2"]
    # row layout: 1024 red, 1024 green, 1024 blue, each 32 x 32 row-major
    i, r, c, ch = 1, 5, 7, 2
    assert x[4 + i, r, c, ch] == raw[i, ch * 1024 + r * 32 + c]
    assert y[4:8].tolist() == labels
    ds = data.load("cifar10", data_dir=str(tmp_path))
    assert np.allclose(ds.x_train.reshape(-1, 3).mean(0), 0, atol=1e-5)  # per-channel standardisation


def test_cifar10_corrupt_files(tmp_path):
    write_cifar(tmp_path)
    p = tmp_path / "data_batch_3"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(DataError, match="data_batch_3"):
        data.load_cifar10(str(tmp_path))
    write_cifar(tmp_path)
    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((4, 3000), np.uint8), b"labels": [0] * 4}, fh)
    with pytest.raises(DataError, match=r"\(n, 3072\)"):
        data.load_cifar10(str(tmp_path))
    write_cifar(tmp_path)
    os.remove(tmp_path / "data_batch_5")
    with pytest.raises(DataError, match="missing data_batch_5"):
        data.load_cifar10(str(tmp_path))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar10_refuses_arbitrary_pickles(tmp_path):
    write_cifar(tmp_path)
    with open(tmp_path / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": _Evil(), b"labels": [0]}, fh)
    with pytest.raises(DataError, match="refusing"):
        data.load_cifar10(str(tmp_path))


def test_stratified_split_is_seeded_disjoint_and_proportional():
    y = np.repeat(np.arange(3), [10, 20, 30])
    tr, te = data.stratified_split(y, 0.3, seed=4)
    assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == 60
    assert np.bincount(y[te]).tolist() == [3, 6, 9]
    tr2, te2 = data.stratified_split(y, 0.3, seed=4)
    assert np.array_equal(te, te2) and not np.array_equal(te, data.stratified_split(y, 0.3, seed=5)[1])


def test_imbalance_counts_follow_the_profiles():
    avail = np.array([130, 125, 128, 140, 122, 150, 133, 126, 129, 131])
    n_min = 122 // 10
    assert data.imbalance_counts(avail, "step:10").tolist() == [120] * 5 + [12] * 5
    assert data.imbalance_counts(avail, "step:10:0.3").tolist() == list(imbalance.step_counts(10, n_min, 10, 0.3))
    assert data.imbalance_counts(avail, "step:10:0.3").tolist() == [120] * 7 + [12] * 3
    lt = data.imbalance_counts(avail, "longtail:100")
    assert lt[0] == 100 and lt[-1] == 1 and np.all(np.diff(lt) <= 0)
    assert np.all(data.imbalance_counts(avail, "step:3") <= avail.min())
    assert data.imbalance_counts(avail, None).tolist() == avail.tolist()
    with pytest.raises(ValueError, match="no minority sample"):
        data.imbalance_counts(avail, "step:500")


@pytest.mark.parametrize("bad", ["step", "step:0.5", "step:x", "step:10:1.5", "longtail:10:0.5", "zipf:3"])
def test_bad_imbalance_names_the_field(bad):
    with pytest.raises(ValueError, match="imbalance"):
        data.parse_imbalance(bad)


def test_flip_labels_changes_exactly_the_fraction():
    y = np.repeat(np.arange(5), 40)
    noisy, mask = data.flip_labels(y, 0.25, 5, seed=1)
    assert mask.sum() == 50 and np.all(noisy[mask] != y[mask]) and np.all(noisy[~mask] == y[~mask])
    assert noisy.min() >= 0 and noisy.max() <= 4
    assert np.array_equal(noisy, data.flip_labels(y, 0.25, 5, seed=1)[0])


def test_digits_split_imbalance_and_noise():
    pytest.importorskip("sklearn")
    ds = data.load("digits", seed=0, imbalance="step:10", label_noise=0.1)
    assert ds.x_train.shape[1:] == (8, 8, 1) and ds.K == 10
    clean = ds.info["clean_counts"]
    assert clean[:5] == [clean[0]] * 5 and clean[5:] == [clean[0] // 10] * 5
    assert ds.info["flipped"] == round(0.1 * sum(clean)) and sum(ds.info["counts"]) == sum(clean)
    assert np.bincount(ds.y_test).min() >= 50  # the test set stays balanced and clean
    again = data.load("digits", seed=0, imbalance="step:10", label_noise=0.1)
    assert np.array_equal(ds.y_train, again.y_train) and np.array_equal(ds.x_train, again.x_train)


def test_digits_file_reader_matches_scikit_learn():
    sk = pytest.importorskip("sklearn.datasets")
    x, y = data._digits()
    d = sk.load_digits()
    assert np.array_equal(x[..., 0], d.images) and np.array_equal(y, d.target)


@pytest.mark.slow
def test_mnist1d_is_generated_offline_and_leaves_global_rng_alone():
    pytest.importorskip("mnist1d")
    state = np.random.get_state()[1].copy()
    ds = data.load("mnist1d", seed=0, test_fraction=0.2)
    assert np.array_equal(np.random.get_state()[1], state)
    assert ds.x_train.shape == (4000, 40, 1) and ds.x_test.shape == (1000, 40, 1) and ds.K == 10


def test_gz_decompression_is_capped(tmp_path, monkeypatch):
    p = tmp_path / "train-images-idx3-ubyte.gz"
    raw = write_idx(p, np.zeros((50, 8, 8), np.uint8))
    assert data.read_idx(p).shape == (50, 8, 8)
    monkeypatch.setattr(data, "MAX_DECOMPRESSED_BYTES", len(raw) - 1)
    with pytest.raises(DataError, match="decompresses to more than"):
        data.read_idx(p)
    monkeypatch.setattr(data, "MAX_DECOMPRESSED_BYTES", len(raw))
    assert data.read_idx(p).shape == (50, 8, 8)


def test_gz_bomb_through_the_cli_exits_2(tmp_path, monkeypatch, capsys):
    from cli_run import run_cli

    write_mnist(tmp_path, gz=True)
    monkeypatch.setattr(data, "MAX_DECOMPRESSED_BYTES", 100)
    code, out, err = run_cli(capsys, "train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--epochs", "1",
                             "--quiet")
    assert code == 2 and out == "" and "Traceback" not in err and "decompresses to more than" in err
