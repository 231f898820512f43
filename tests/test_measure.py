"""``ufm measure``: files of every format read back the same arrays, nothing is unpickled, bad shapes are refused
with exit 2, and known geometries (orthogonal frame, simplex ETF) give the expected numbers beside the UFM."""
import json
import os
import pickle
import sys

import numpy as np
import pytest
from cli_run import run_cli

from solvers.workflows import measure as M
from ufm import geometry, theory

K = 4


def embeddings(kind, counts, noise=0.01, seed=0, d=None):
    """Rows at the orthogonal frame (``of``) or the simplex ETF (``etf``) plus Gaussian noise; labels sorted."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(counts)), counts)
    E = np.eye(len(counts), d or len(counts))
    V = E if kind == "of" else E - E.mean(0)
    return V[y] + noise * rng.standard_normal((len(y), V.shape[1])), y, V


@pytest.fixture(scope="module")
def of_case():
    Z, y, _ = embeddings("of", [20, 20, 5, 5])
    return Z, y, M.measure_row(Z, y, loss="sc", tau=0.1, nonneg=True)


@pytest.fixture(scope="module")
def etf_case():
    Z, y, V = embeddings("etf", [10] * K)
    return Z, y, V, M.measure_row(Z, y, 3 * V, loss="sc", tau=0.1, nonneg=False)


@pytest.mark.slow
def test_the_orthogonal_frame_beside_the_ufm_plus(of_case):
    _, _, r = of_case
    g, u = r["geometry"], r["ufm"]
    assert g["normalization"] == "rows" and r["counts"] == [20, 20, 5, 5]
    assert g["delta_gm"] < 0.03
    assert u["delta_gm"] < 1e-4 and u["certified"] and u["lower_bound"] is not None
    assert u["lower_bound"] <= u["loss"] + 1e-9
    assert u["prediction"]["geometry"]
    assert r["distance_to_ufm"] < 0.03
    assert r["distance_to_ufm"] == pytest.approx(geometry.gram_distance(g["mean_cosines"], u["mean_cosines"]))
    assert g["cosine_groups"]["maj_min"] == pytest.approx(0, abs=0.03)


@pytest.mark.slow
def test_the_simplex_etf_beside_the_balanced_ufm(etf_case):
    _, _, _, r = etf_case
    assert r["geometry"]["delta_gm"] == pytest.approx(theory.etf_delta_gm(K), abs=0.02)
    assert r["ufm"]["delta_gm"] == pytest.approx(theory.etf_delta_gm(K), abs=2e-3)
    assert r["distance_to_ufm"] < 0.03 and r["ufm"]["certified"]
    assert r["geometry"]["etf_distance"] < 0.03
    # the ETF is far from the UFM+ (the orthogonal frame)
    Z, y, _, _ = etf_case
    far = M.measure_row(Z, y, loss="sc", tau=0.1, nonneg=True)
    assert far["distance_to_ufm"] > 0.4


@pytest.mark.slow
def test_nc3_and_nc4_match_direct_computations(etf_case):
    Z, y, V, r = etf_case
    rng = np.random.default_rng(1)
    W = 3 * V + 0.2 * rng.standard_normal(V.shape)
    X = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    means = np.stack([X[y == c].mean(0) for c in range(K)])
    C = means - means.mean(0)
    direct = np.sum((W / np.linalg.norm(W) - C / np.linalg.norm(C)) ** 2)
    g = M.network_geometry(Z, y, W, "sc")
    assert g["nc3"] == pytest.approx(direct, rel=1e-12)
    pred = np.argmax(X @ W.T, axis=1)
    near = np.array([np.argmin([np.linalg.norm(x - m) for m in means]) for x in X])
    assert g["nc4"] == pytest.approx(np.mean(pred != near))  # the mismatch rate (Papyan et al.)
    assert r["geometry"]["nc3"] < 1e-3 and r["geometry"]["nc4"] == 0.0
    # without a classifier there is neither
    assert M.network_geometry(Z, y, None, "sc")["nc3"] is None
    # CE measures the raw rows
    assert M.network_geometry(Z, y, W, "ce")["normalization"] == "none"


# -- files ------------------------------------------------------------------------------------------------------

def write(path, arrays: dict):
    ext = os.path.splitext(path)[1]
    if ext == ".npy":
        np.save(path, next(iter(arrays.values())))
    elif ext == ".npz":
        np.savez(path, **arrays)
    elif ext in (".csv", ".tsv"):
        a = next(iter(arrays.values()))
        sep = "," if ext == ".csv" else "\t"
        a2 = a.reshape(len(a), -1)
        header = sep.join(f"c{j}" for j in range(a2.shape[1]))
        np.savetxt(path, a2, delimiter=sep, header=header, comments="", fmt="%.17g")
    elif ext == ".pt":
        import torch

        t = {k: torch.from_numpy(v) for k, v in arrays.items()}
        torch.save(next(iter(t.values())) if len(t) == 1 else t, path)
    return path


FORMATS = [".npy", ".npz", ".csv", ".tsv", pytest.param(".pt", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("torch") is None, reason="torch not installed"))]


@pytest.mark.parametrize("ext", FORMATS)
def test_every_format_round_trips(tmp_path, ext):
    Z, y, _ = embeddings("of", [3, 4, 2], d=5)
    zp = write(str(tmp_path / f"z{ext}"), {"embeddings": Z})
    yp = write(str(tmp_path / f"y{ext}"), {"labels": y})
    np.testing.assert_array_equal(M.load_array(zp), Z)
    np.testing.assert_array_equal(M.load_array(yp, what="labels").astype(np.int64), y)


def test_npz_with_several_arrays_needs_a_key(tmp_path):
    Z, y, _ = embeddings("of", [3, 4, 2])
    p = str(tmp_path / "both.npz")
    np.savez(p, feats=Z, other=Z + 1, labels=y)
    np.testing.assert_array_equal(M.load_array(p, key="other"), Z + 1)
    np.testing.assert_array_equal(M.load_array(p, what="labels"), y)
    with pytest.raises(M.InputError, match="--key"):
        M.load_array(p)
    with pytest.raises(M.InputError, match="no array named 'nope'"):
        M.load_array(p, key="nope")


@pytest.mark.slow
def test_the_command_reads_an_npz_with_key_and_writes_its_outputs(tmp_path, capsys):
    Z, y, V = embeddings("of", [6, 6, 2, 2])
    p = str(tmp_path / "run.npz")
    np.savez(p, feats=Z, labels=y, W=V)
    out = str(tmp_path / "out")
    code, stdout, err = run_cli(capsys, "measure", "--embeddings", p, "--key", "feats", "--labels", p,
                                "--classifier", p, "--classifier-key", "W", "--relu", "--json", "--out", out)
    assert code == 0, err
    r = json.loads(stdout)
    assert r["counts"] == [6, 6, 2, 2] and r["ufm"]["certified"] and r["distance_to_ufm"] < 0.05
    assert r["geometry"]["nc4"] == 0.0 and r["versions"]["ufm"]
    assert set(os.listdir(out)) >= {"result.json", "cosines.png", "per_class.csv"}
    assert json.load(open(os.path.join(out, "result.json")))["counts"] == [6, 6, 2, 2]
    lines = open(os.path.join(out, "per_class.csv")).read().splitlines()
    assert lines[0].startswith("class,count,minority") and len(lines) == 1 + 4
    assert open(os.path.join(out, "cosines.png"), "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_the_command_reads_csv_and_prints_a_summary(tmp_path, capsys):
    Z, y, _ = embeddings("of", [5, 5, 5])
    zp = write(str(tmp_path / "z.csv"), {"z": Z})
    yp = write(str(tmp_path / "y.tsv"), {"y": y})
    code, out, err = run_cli(capsys, "measure", "--embeddings", zp, "--labels", yp, "--no-ufm")
    assert code == 0, err
    assert "delta_gm" in out and "UFM" not in out


# -- refusals ---------------------------------------------------------------------------------------------------

class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_malicious_pickle_is_refused_and_never_runs(tmp_path, capsys):
    marker = str(tmp_path / "pwned")
    y = np.zeros(3, dtype=np.int64)
    yp = str(tmp_path / "y.npy")
    np.save(yp, y)
    paths = []
    obj = np.array([Evil(marker), 1], dtype=object)
    p = str(tmp_path / "evil.npy")
    np.save(p, obj, allow_pickle=True)
    paths.append(p)
    p = str(tmp_path / "evil.npz")
    np.savez(p, embeddings=obj)
    paths.append(p)
    p = str(tmp_path / "evil.pt")
    with open(p, "wb") as fh:
        pickle.dump(Evil(marker), fh)
    paths.append(p)
    for p in paths:
        code, out, err = run_cli(capsys, "measure", "--embeddings", p, "--labels", yp)
        assert code == 2 and out == "", (p, err)
        assert "refused" in err or "cannot read" in err, (p, err)
        assert not os.path.exists(marker), p
    with pytest.raises(M.InputError):
        M.load_array(str(tmp_path / "evil.npy"))
    assert not os.path.exists(marker)


def test_torch_missing_is_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    p = tmp_path / "z.pt"
    p.write_bytes(b"whatever")
    with pytest.raises(M.InputError, match="needs the torch package"):
        M.load_array(str(p))


@pytest.mark.parametrize("labels,why", [
    (np.zeros((5, 2), dtype=np.int64), "1-D array"),
    (np.array([0, 1, 0, 1]), "4 labels for 5"),
    (np.array([0, 1, 3, 0, 1]), "class 2 has no sample"),
    (np.array([0, 1, -1, 0, 1]), "0..K-1"),
    (np.array([0, 1, 0.5, 0, 1]), "integers"),
])
def test_bad_labels_are_refused(tmp_path, capsys, labels, why):
    Z, _, _ = embeddings("of", [3, 2])
    zp, yp = str(tmp_path / "z.npy"), str(tmp_path / "y.npy")
    np.save(zp, Z)
    np.save(yp, labels)
    code, out, err = run_cli(capsys, "measure", "--embeddings", zp, "--labels", yp, "--no-ufm")
    assert code == 2 and out == "" and why in err and len(err.strip().splitlines()) == 1, err


def test_bad_embeddings_and_classifier_are_refused(tmp_path):
    Z, y, V = embeddings("of", [3, 2])
    bad = Z.copy()
    bad[0, 0] = np.nan
    with pytest.raises(M.InputError, match="NaN"):
        M.validate(bad, y)
    with pytest.raises(M.InputError, match="2-D"):
        M.validate(Z[:, 0], y)
    with pytest.raises(M.InputError, match=r"classifier: expected shape \(K, d\) = \(2, 2\)"):
        M.validate(Z, y, V[:, :1])
    with pytest.raises(M.InputError, match="no such file"):
        M.load_array(str(tmp_path / "missing.npy"))
    p = tmp_path / "z.bin"
    p.write_bytes(b"1")
    with pytest.raises(M.InputError, match="unknown format"):
        M.load_array(str(p))


@pytest.mark.slow
def test_explicit_batches_keep_the_rows_order(tmp_path):
    Z, y, _ = embeddings("of", [3, 3])
    order = np.array([0, 3, 1, 4, 2, 5])
    batches = ((0, 1, 2, 3), (2, 3, 4, 5), (4, 5, 0, 1))  # two samples of each class, in the shuffled order
    r = M.measure_row(Z[order], y[order], loss="sc", tau=0.5, nonneg=True, batches=batches)
    p = r["ufm"]["problem"]
    assert p["batching"] == "explicit" and p["labels"] == [0, 1, 0, 1, 0, 1]
    assert r["distance_to_ufm"] < 0.05 and r["ufm"]["delta_gm"] < 1e-3
