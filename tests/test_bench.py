"""The benchmark baselines compute what they claim (SupContrast = ufm's loss, the PyTorch solver reaches the closed
form), and the suite judges its targets correctly. No timing here: speed lives in benchmarks/."""
import numpy as np
import pytest
from reference import sc_loss_loops

from benchmarks.__main__ import targets
from benchmarks.common import table
from ufm import project, theory

LABELS = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])  # class 2 is a singleton


def test_supcon_equals_ufm_loss_and_its_gradient():
    torch = pytest.importorskip("torch")
    from benchmarks.torch_ref import step, supcon_loss

    rng = np.random.default_rng(0)
    Z = rng.normal(size=(10, 5))
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    for tau in (0.1, 0.7):
        loss, grad = step(torch.tensor(Z), torch.tensor(LABELS), tau)
        assert float(loss) == pytest.approx(sc_loss_loops(Z, LABELS, tau), rel=1e-12)
        eps = 1e-6
        v = rng.normal(size=Z.shape)
        fd = (sc_loss_loops(Z + eps * v, LABELS, tau) - sc_loss_loops(Z - eps * v, LABELS, tau)) / (2 * eps)
        assert float((grad.numpy() * v).sum()) == pytest.approx(fd, rel=1e-6)
    # SupContrast's base temperature b scales the value by tau / b (docs/theory.md §2)
    b = float(supcon_loss(torch.tensor(Z), torch.tensor(LABELS), 0.1, base_temperature=0.07))
    assert b == pytest.approx(0.1 / 0.07 * sc_loss_loops(Z, LABELS, 0.1), rel=1e-12)


def test_torch_projection_is_ufms():
    torch = pytest.importorskip("torch")
    from benchmarks.torch_ref import project as tproject

    Z = np.random.default_rng(1).normal(size=(8, 4))
    Z[0] = -np.abs(Z[0])  # no positive entry: the documented fallback
    got = tproject(torch.tensor(Z), 1.5, nonneg=True).numpy()
    assert np.allclose(got, np.asarray(project(Z, "sphere", 1.5, True)), atol=1e-15)


def test_torch_pgd_reaches_the_orthogonal_frame():
    pytest.importorskip("torch")
    from benchmarks.torch_ref import solve_pgd

    labels = np.repeat(np.arange(4), [6, 6, 3, 2])
    Z, loss, steps, _ = solve_pgd(labels, 0.2, 5, seed=0)
    assert abs(loss - theory.sc_of_loss([6, 6, 3, 2], 0.2)) <= 1e-6 and 1 < steps < 5000
    assert float(Z.min()) >= 0


def _results(torch_s, ufm_s, floor_s, peak, loop_s, many_s):
    step = {"rows": [{"N": 4000, "results": {"torch": {"median_s": torch_s}, "ufm": {"median_s": ufm_s},
                                             "exp_floor": {"median_s": floor_s}}}]}
    memory = {"rows": [{"N": 100_000, "impl": "ufm", "peak_rss_bytes": peak}]}
    many = {"rows": [{"set": "same shape", "loop_s": loop_s, "many_s": many_s}]}
    return {"sc_step": step, "memory": memory, "many": many, "certified": None}


def test_targets_are_judged_from_the_results():
    met = targets(_results(torch_s=2.0, ufm_s=0.05, floor_s=0.03, peak=1 << 30, loop_s=30.0, many_s=1.0))
    assert [t["met"] for t in met] == [True, True, True, True]
    missed = targets(_results(torch_s=1.0, ufm_s=0.1, floor_s=0.04, peak=5 << 30, loop_s=3.0, many_s=1.0))
    assert [t["met"] for t in missed] == [False, False, False, False]
    assert missed[0]["measured"] == "10.0x" and missed[2]["measured"] == "5.00 GiB"
    assert targets({"sc_step": None, "memory": None, "many": None}) == []


def test_markdown_table():
    out = table(["a", "b"], [[1, 0.123456], [None, "x"]])
    assert out.splitlines() == ["| a | b |", "|---|---|", "| 1 | 0.123 |", "| — | x |"]


@pytest.mark.parametrize("argv,word", [(["--only", "nope"], "--only"), (["--repeats", "0"], "--repeats")])
def test_ufm_bench_bad_input_exits_2(capsys, argv, word):
    from ufm.cli import main

    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert word in err and "Traceback" not in err
