"""``ufm verify`` / ``solvers.workflows.verify``: verdicts that match the theorems' statements.

Every verdict kind is produced here from a case where it is the right answer: HOLDS (the predicted point attains
a proved bound), FAILS (a certified counterexample: a bound above a wrong closed form, a point below it, a verified
other minimiser against a uniqueness claim), a verified witness where the OF is not unique, INCONCLUSIVE (nothing
proved). Tests read the verdict lines of the human table exactly, so that "NOT CERTIFIED" never passes for
"CERTIFIED" nor "0 INCONCLUSIVE" for a verdict.
"""
import json
import re
import shlex

import numpy as np
import pytest

import solvers.workflows.verify as V
from solvers.workflows.verify import SUITE, THEOREMS, Setting, applicability, found_geometry, random_setting, verify
from ufm import geometry, interaction, theory
from cli_run import run_cli

VERDICT_LINE = re.compile(r"^    verdict      (HOLDS|FAILS|INCONCLUSIVE|NOT APPLICABLE|REFUTED)"
                          r"(?: \(within tolerance, margin [-+.e0-9]+\))?(?: \[(?:conjecture|claim)\])?:", re.M)


def by_key(rows):
    return {(r["key"] if isinstance(r, dict) else r.key): r for r in rows}


def verdict_words(out):
    return VERDICT_LINE.findall(out)


def last_line(out):
    return out.strip().splitlines()[-1]


# -- the three settings that must hold --------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["--counts", "9,9,1,1", "--tau", "0.5", "--dim", "4"],
    ["--counts", "3,3,2", "--batches", "0,1,2,6;3,4,5,7;6,7,0;6,7,3;0,3,6,7"],
    ["--counts", "6,6,4", "--batching", "fixed:4", "--seed", "1"],
])
@pytest.mark.slow
def test_settings_whose_of_is_not_unique_hold(capsys, argv):
    code, out, err = run_cli(capsys, "verify", *argv, "--json")
    assert code == 0, err
    rep = json.loads(out)
    rows = by_key(rep["rows"])
    assert rep["holds"] is True and rep["exit"] == 0
    assert rep["verdicts"]["fails"] == 0 and rep["verdicts"]["inconclusive"] == 0
    of, uniq = rows["sc-of"], rows["of-unique"]
    # the OF is a global minimiser: its float64 loss is the closed form and a proved bound meets it
    m = of["minimum"]
    assert of["verdict"] == "holds" and m["certified"] is True
    assert abs(m["loss"] - m["closed_form"]) <= 1e-9 and m["lower_bound"] <= m["loss"] + 1e-12
    assert m["gap"] <= 1e-6 * max(1, abs(m["loss"]))
    # ... but not the only one: a verified witness with the OF's loss and another Gram
    assert uniq["verdict"] == "holds" and uniq["unique"]["claim"] is False
    alt = uniq["alternative"]
    assert alt["verified"] is True and abs(alt["loss"] - alt["of_loss"]) <= 1e-9 and alt["gram_change"] > 0.5
    assert rows["sc-etf"]["verdict"] == "not applicable" and "imbalanced" in rows["sc-etf"]["reason"]
    for r in rep["rows"]:
        assert set(r["setting"]) >= {"counts", "tau", "dim", "batching", "batches", "seed"}


def test_human_table_of_a_holding_setting(capsys):
    code, out, err = run_cli(capsys, "verify", "--counts", "9,9,1,1", "--tau", "0.5", "--dim", "4")
    assert code == 0, err
    # sc-etf, sc-etf-ball, sc-landscape (d = K), sc-of, sc-of-ball, of-unique, ce-etf, bcl-etf
    assert verdict_words(out) == ["NOT APPLICABLE"] * 3 + ["HOLDS"] * 3 + ["NOT APPLICABLE", "REFUTED"]
    minimum = [line for line in out.splitlines() if line.startswith("    minimum ")]
    assert len(minimum) == 4 and all(line.endswith(": CERTIFIED") for line in minimum[:3])
    assert minimum[3].endswith(": NOT CERTIFIED")  # BCL's claimed ETF lies above the certified minimum
    assert "REFUTED [claim]:" in out
    assert last_line(out) == ("4 checks applied: theorems 2 HOLD, 0 FAIL, 0 INCONCLUSIVE; conjectures 1 HOLD, 0 FAIL, "
                              "0 INCONCLUSIVE; claims 0 HOLD, 1 REFUTED, 0 INCONCLUSIVE (4 not applicable). Result: "
                              "all theorems and conjectures hold; 1 claim refuted (exit 0).")


# -- holds ------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_balanced_setting_holds_for_every_applicable_theorem():
    rows = by_key(verify((4, 4, 4), tau=0.5, dim=3))
    etf, ce = rows["sc-etf"], rows["ce-etf"]
    assert etf.verdict == "holds" and abs(etf.minimum["loss"] - theory.sc_etf_loss(4, 3, 0.5)) <= 1e-9
    assert etf.found["is_predicted"] and etf.found["geometry"] == "etf" and etf.found["nc1"] <= 1e-6
    assert ce.verdict == "holds" and ce.found["is_predicted"]
    r_W = theory.predict(V._Case(Setting((4, 4, 4), dim=3).resolved(), 1, 1, 1e-6).ce).r_W
    assert ce.minimum["r_W"] == pytest.approx(r_W) and ce.found["max_norm_error"] <= 1e-3
    assert ce.found["classifier_mean_distance"] <= 1e-3
    assert rows["sc-of"].verdict == "holds" and rows["of-unique"].verdict == "holds"
    assert rows["of-unique"].unique["claim"] is True and rows["of-unique"].alternative is None
    assert rows["sc-landscape"].verdict == "not applicable" and "dim 3 <= K" in rows["sc-landscape"].reason


@pytest.mark.slow
def test_landscape_reports_the_fraction_of_starts_at_the_bound():
    land = by_key(verify((5, 3, 1), tau=0.5, dim=5, starts=6))["sc-landscape"]
    assert land.verdict == "holds", land.reason
    f = land.found
    assert f["starts"] == 6 and f["at_bound"] == 6 and f["fraction_at_bound"] == 1.0 and f["candidates"] == []
    assert land.minimum["certified"] and land.minimum["closed_form"] is None


# -- fails: certified counterexamples ------------------------------------------------------------------------------
@pytest.mark.parametrize("shift,kind", [(-0.01, "proved lower bound above the predicted minimum"),
                                        (+0.01, "point below the predicted minimum")])
def test_a_wrong_closed_form_fails_with_a_certified_counterexample(monkeypatch, shift, kind):
    true = theory.sc_etf_loss
    monkeypatch.setattr(theory, "sc_etf_loss", lambda *a, **k: true(*a, **k) + shift)
    etf = by_key(verify((4, 4, 4), tau=0.5, dim=3))["sc-etf"]
    assert etf.verdict == "fails" and etf.counterexample["kind"] == kind
    cx = etf.counterexample
    assert abs(abs(cx["difference"]) - 0.01) <= 1e-6 and cx["tolerance"] == pytest.approx(1e-6 * cx["predicted_minimum"])
    assert etf.reason.startswith("certified counterexample")


@pytest.mark.slow
def test_a_wrong_closed_form_exits_1(capsys, monkeypatch):
    true = theory.sc_etf_loss
    monkeypatch.setattr(theory, "sc_etf_loss", lambda *a, **k: true(*a, **k) - 0.01)
    code, out, err = run_cli(capsys, "verify", "--counts", "3,3,3", "--dim", "2", "--starts", "2")
    assert code == 1
    assert verdict_words(out)[0] == "FAILS"
    # the widening sc-etf-ball fails alongside the theorem (its conjecture row shares the check)
    assert last_line(out).endswith("Result: FAILS (exit 1): a theorem fails with a certified counterexample.")
    assert "conjectures 0 HOLD, 1 FAIL" in last_line(out)


def test_a_verified_other_minimiser_fails_a_uniqueness_claim(monkeypatch):
    # the batch graph is told (wrongly) that two single-sample classes are forced apart: PGD's point, where they
    # share a direction, snaps to an exact minimiser with another Gram
    real = interaction.check_problem
    monkeypatch.setattr(interaction, "check_problem", lambda p, *a, **k: real(p, *a, **k)._replace(
        unique_of=True, reason="conditions (a) and (b) hold", witness=None, witness_Z=None))
    rows = by_key(verify((9, 9, 1, 1), tau=0.5, dim=4))
    assert rows["sc-of"].verdict == "holds"  # the OF is still a global minimiser
    u = rows["of-unique"]
    assert u.verdict == "fails" and u.counterexample["kind"] == "verified different minimiser"
    assert u.alternative["verified"] and abs(u.alternative["loss"] - u.alternative["of_loss"]) <= 1e-9
    assert "share direction" in u.alternative["changes"]


# -- not unique: a verified witness ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_classes_that_never_meet_give_a_verified_witness():
    batches = [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 0, 1]]  # classes 1 (4..7) and 2 (8, 9) never share a batch
    rows = by_key(verify((4, 4, 2), tau=0.5, dim=4, batches=batches))
    u = rows["of-unique"]
    assert u.verdict == "holds" and u.unique["claim"] is False and [1, 2] in u.unique["unmet_class_pairs"]
    assert u.alternative["verified"] and abs(u.alternative["loss"] - u.alternative["of_loss"]) <= 1e-9
    assert rows["sc-of"].verdict == "holds"


# -- inconclusive -------------------------------------------------------------------------------------------------
class _NoProof:
    lower_bound, method, status, details = None, "first-order", "no_proof", {"why": "the eigenvalue was not proved"}


@pytest.mark.slow
def test_no_proved_bound_is_inconclusive(capsys, monkeypatch):
    monkeypatch.setattr(V, "_certify", lambda *a, **k: _NoProof())
    code, out, err = run_cli(capsys, "verify", "--counts", "3,3,2", "--dim", "3", "--json")
    assert code == 3
    rows = by_key(json.loads(out)["rows"])
    for key in ("sc-of", "sc-of-ball", "of-unique"):
        assert rows[key]["verdict"] == "inconclusive"
    assert "eigenvalue was not proved" in rows["sc-of"]["reason"] and rows["sc-of"]["minimum"]["lower_bound"] is None
    code, out, err = run_cli(capsys, "verify", "--counts", "3,3,2", "--dim", "3")
    assert code == 3 and verdict_words(out).count("INCONCLUSIVE") == 3 and "HOLDS" not in verdict_words(out)
    assert last_line(out).endswith("Result: INCONCLUSIVE (exit 3): nothing fails, but some checks are inconclusive; "
                                   "1 claim refuted.")


@pytest.mark.slow
def test_a_loose_bound_is_inconclusive_not_a_failure(monkeypatch):
    class Loose:
        method, status, details = "first-order", "optimal", {}

        def __init__(self, problem, point):
            self.lower_bound = V._loss(problem, point.Z, point.W) - 1e-3

    monkeypatch.setattr(V, "_certify", lambda problem, point, method, tol: Loose(problem, point))
    of = by_key(verify((3, 3), tau=0.5, dim=2))["sc-of"]
    assert of.verdict == "inconclusive" and "not tight" in of.reason and of.minimum["certified"] is False


@pytest.mark.slow
def test_a_start_stuck_above_the_bound_is_a_candidate_not_a_counterexample(monkeypatch):
    real = V._Case._sc_starts

    def with_a_stuck_start(self):
        sols = real(self)
        stuck = sols[-1]
        Z = np.abs(np.random.default_rng(0).standard_normal(stuck.Z.shape))
        stuck.Z, stuck.converged = Z / np.linalg.norm(Z, axis=1, keepdims=True), True
        return sols

    monkeypatch.setattr(V._Case, "_sc_starts", with_a_stuck_start)
    monkeypatch.setattr(V, "_escape", lambda case, sol: V._loss(case.sc, sol.Z))  # the perturbation comes back
    land = by_key(verify((4, 4, 2), tau=0.5, dim=4, starts=3))["sc-landscape"]
    assert land.verdict == "inconclusive" and "candidate" in land.reason
    (c,) = land.found["candidates"]
    assert c["seed"] == 2 and c["gap"] > 1e-3 and c["lower_bound"] == land.minimum["lower_bound"]


def test_a_failing_solver_is_inconclusive_not_a_crash(monkeypatch):
    import solvers
    from solvers.pgd import NonFiniteLoss

    def broken(*a, **k):
        raise NonFiniteLoss("the loss became non-finite at step 3")

    monkeypatch.setattr(solvers, "solve", broken)
    rows = by_key(verify((3, 3), tau=0.5, dim=2))
    assert rows["sc-of"].verdict == "inconclusive" and "non-finite" in rows["sc-of"].reason
    assert rows["sc-etf"].verdict == "inconclusive"


# -- the suite, the help, the audit ---------------------------------------------------------------------------
def test_the_suite_applies_every_theorem():
    why = [applicability(s) for s in SUITE]
    for t in THEOREMS:
        assert any(w[t.key] == "" for w in why), t.key


def test_help_lists_the_theorems_and_their_hypotheses(capsys):
    code, out, err = run_cli(capsys, "verify", "--help")
    assert code == 0
    for t in THEOREMS:
        assert t.key in out and t.hypotheses[:40] in out.replace("\n", " ")
    assert "exit codes" in out


@pytest.mark.slow
def test_audit_json(capsys, tmp_path):
    code, out, err = run_cli(capsys, "verify", "--audit", "2", "--seed", "7", "--steps", "3000", "--starts", "4",
                             "--json", "--out", str(tmp_path))
    rep = json.loads(out)
    assert rep["settings"] == 2 and len(rep["rows"]) == 2 * len(THEOREMS)
    assert {r["setting"]["seed"] for r in rep["rows"]} and all("counts" in r["setting"] for r in rep["rows"])
    assert set(rep["verdicts"]) == {"holds", "fails", "inconclusive", "not applicable", "refuted"}
    assert sum(rep["verdicts"].values()) == len(rep["rows"]) and rep["counterexamples"] == []
    assert len(rep["refuted_claims"]) == rep["verdicts"]["refuted"]  # claims apart from theorems' counterexamples
    assert code == rep["exit"] == (3 if rep["verdicts"]["inconclusive"] else 0)
    assert "ufm verify --audit" not in err  # --json draws no progress bar (nor does a stderr that is not a terminal)
    assert json.loads((tmp_path / "verify.json").read_text())["settings"] == 2


def test_a_setting_command_reproduces_the_setting():
    from ufm.cli import _parser

    parser, _ = _parser()
    rng = np.random.default_rng(1)
    for kind in ("full", "fixed", "subsets", "binding", "explicit"):
        s = random_setting(rng, kind).resolved()
        argv = shlex.split(s.command())[1:]
        a = parser.parse_args(argv)
        batches = None if a.batches is None else tuple(tuple(int(i) for i in b.split(",")) for b in a.batches.split(";"))
        back = Setting(tuple(a.counts), a.tau, a.dim, a.radius, a.constraint, a.weight_decay,
                       "explicit" if batches else a.batching, batches, a.seed).resolved()
        assert back == s


# -- pieces -------------------------------------------------------------------------------------------------------
def test_found_geometry():
    assert found_geometry(theory.etf_gram(4))[0] == "etf"
    assert found_geometry(theory.of_gram(4))[0] == "of"
    assert found_geometry(0.5 * theory.of_gram(3) + 0.5)[0] == "other"


def test_predicted_points():
    V4 = V.etf_vectors(4, 5)
    assert np.allclose(V4 @ V4.T, theory.etf_gram(4)) and np.allclose(V4[:, 3:], 0)
    labels = np.repeat(np.arange(3), 2)
    Z = V.etf_vectors(3, 3)[labels]
    assert geometry.classifier_mean_distance(Z, 2.0 * V.etf_vectors(3, 3), labels, 3) <= 1e-12  # aligned classifier
    assert geometry.classifier_mean_distance(Z, -V.etf_vectors(3, 3), labels, 3) == pytest.approx(2.0)
    assert geometry.nc3(Z, -V.etf_vectors(3, 3), labels, 3) == pytest.approx(4.0)


@pytest.mark.parametrize("argv,word", [(["--counts", "3,0"], "counts"), (["--tau", "-1", "--counts", "2,2"], "tau"),
                                        (["--counts", "4,4", "--batching", "fixed:0"], "batch"),
                                        (["--audit", "0"], "--audit"), (["--audit", "2", "--counts", "3,3"], "--counts"),
                                        (["--counts", "2,2", "--starts", "0"], "--starts"),
                                        (["--batching", "fixed:2"], "--counts")])
def test_bad_input_exits_2(capsys, argv, word):
    code, out, err = run_cli(capsys, "verify", *argv)
    assert code == 2 and word in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_bcl_claim_is_judged_by_the_certificate_refuted_or_holding(capsys):
    """BCL's claim (the ETF for any counts; Zhu et al.'s loss, prototypes included) is a claim, not a theorem:
    under imbalance a certified point below the ETF refutes it (exit code unaffected); balanced, the ETF attains
    the certified minimum. At counts 10,5,2, tau 0.5, d 3 the certified minimum lies 3.5205e-3 below the ETF."""
    code, out, err = run_cli(capsys, "verify", "--counts", "10,5,2", "--tau", "0.5", "--dim", "3", "--json")
    rep = json.loads(out)
    row = next(r for r in rep["rows"] if r["key"] == "bcl-etf")
    assert row["verdict"] == "refuted" and code == 0, row["reason"]
    cx = row["counterexample"]
    assert cx["kind"] == "point below the predicted minimum" and abs(cx["difference"] + 3.5205e-3) <= 1e-6
    assert row["minimum"]["closed_form"] - row["minimum"]["lower_bound"] <= 3.5206e-3  # no point lies lower
    assert row["found"]["at_minimum"] and row["minimum"]["lower_bound"] <= cx["loss"]
    balanced = next(r for r in verify((4, 4, 4), tau=0.5, dim=3, starts=2) if r.key == "bcl-etf")
    assert balanced.verdict == "holds" and balanced.minimum["certified"], balanced.reason


# -- the records: theorems as their papers state them, conjectures apart ------------------------------------------
def test_every_row_is_one_record_with_its_source():
    assert len({t.key for t in THEOREMS}) == len(THEOREMS)
    for t in THEOREMS:
        assert t.kind in ("theorem", "conjecture", "claim") and t.claim == (t.kind != "theorem")
        assert callable(t.applies) and callable(t.check) and len(t.source) > 80, t.key
    kinds = {t.key: t.kind for t in THEOREMS}
    assert kinds["sc-etf"] == kinds["sc-of"] == kinds["of-unique"] == kinds["ce-etf"] == "theorem"
    assert kinds["sc-etf-ball"] == kinds["sc-of-ball"] == kinds["sc-landscape"] == "conjecture"
    assert kinds["bcl-etf"] == "claim"
    assert "cannot be read" in V._TITLE["sc-landscape"].source  # the paper's tau condition, said explicitly


def test_a_conjecture_fails_beside_its_theorem_and_alone(capsys, monkeypatch):
    """A wrong closed form: on the sphere the theorem fails (exit 1) and its widening fails alongside; on the ball
    only the conjecture applies, and a failed conjecture exits 1 too (a statement ufm makes is false)."""
    true = theory.sc_etf_loss
    monkeypatch.setattr(theory, "sc_etf_loss", lambda *a, **k: true(*a, **k) - 0.01)
    code, out, err = run_cli(capsys, "verify", "--counts", "3,3,3", "--dim", "2", "--starts", "2", "--json")
    rows = by_key(json.loads(out)["rows"])
    assert code == 1 and rows["sc-etf"]["verdict"] == "fails" and rows["sc-etf-ball"]["verdict"] == "fails"
    assert rows["sc-etf-ball"]["kind"] == "conjecture" and "conjecture fails" in rows["sc-etf-ball"]["reason"]
    code, out, err = run_cli(capsys, "verify", "--counts", "3,3,3", "--dim", "2", "--starts", "2",
                             "--constraint", "ball", "--json")
    rows = by_key(json.loads(out)["rows"])
    assert rows["sc-etf"]["verdict"] == "not applicable" and "ball" in rows["sc-etf"]["reason"]
    assert rows["sc-etf-ball"]["verdict"] == "fails" and code == 1, rows["sc-etf-ball"]["reason"]


def test_audit_settings_apply_to_most_rows():
    """The audit draws inside the hypotheses (and near their edges): at least 80% of its rows apply, on two seeds
    and one full cycle of profiles (applicability only: nothing is solved)."""
    for seed in (0, 11):
        rng = np.random.default_rng(seed)
        settings = [V.audit_setting(rng, V.PROFILES[i % len(V.PROFILES)]).resolved() for i in range(len(V.PROFILES))]
        why = [w for s in settings for w in applicability(s).values()]
        assert sum(w == "" for w in why) / len(why) >= 0.8
        # the edges are there: small tau, n = 2, K = 2, d = K, d = K-1, singletons, mini-batches, the ball
        assert min(s.tau for s in settings) < 0.08 and any(s.counts[0] == 2 and len(set(s.counts)) == 1 for s in settings)
        assert any(len(s.counts) == 2 for s in settings) and any(min(s.counts) == 1 for s in settings)
        assert {s.dim - len(s.counts) for s in settings} >= {-1, 0, 1}
        assert any(s.batching != "full" for s in settings) and any(s.constraint == "ball" for s in settings)


def test_a_verdict_within_the_tolerance_only_says_so():
    """A point below the prediction by less than the tolerance (here 1e-9 below, tol 1e-6): the row holds, with
    ``within_tolerance`` and the ``margin``; at the prediction to rounding it is not flagged."""
    row = V.Row("k", "t", "h", reason="r")
    V._margin(row, 1.0, [("the predicted point", 1.0), ("PGD", 1.0 - 1e-9)], {"lower_bound": 1.0 - 2e-9})
    assert row.within_tolerance is True and row.margin == pytest.approx(-2e-9) and "PGD lies 1.0e-09 below" in row.reason
    row = V.Row("k", "t", "h", reason="r")
    V._margin(row, 1.0, [("the predicted point", 1.0)], {"lower_bound": 1.0 - 1e-9})
    assert row.within_tolerance is True and "the proved bound lies 1.0e-09 below" in row.reason
    row = V.Row("k", "t", "h", reason="r")
    V._margin(row, 2.0, [("the predicted point", 2.0), ("PGD", 2.0 + 1e-8)], {"lower_bound": 2.0 - 1e-14})
    assert row.within_tolerance is False and row.reason == "r"


@pytest.mark.slow
def test_the_bcl_row_at_a_low_temperature_holds_only_within_the_tolerance(capsys):
    """counts 10,1,1, tau 0.0637: the ETF's BCL loss is ~1e-10 and the classes with no positive could sit opposite
    the majority, lower still; the certificate proves the ETF within the tolerance, not exactly."""
    code, out, err = run_cli(capsys, "verify", "--counts", "10,1,1", "--tau", "0.0637", "--dim", "5", "--starts", "4",
                             "--json")
    row = by_key(json.loads(out)["rows"])["bcl-etf"]
    assert row["verdict"] == "holds" and row["within_tolerance"] is True and row["margin"] < -1e-11, row["reason"]
    assert "WITHIN THE TOLERANCE ONLY" in row["reason"]
