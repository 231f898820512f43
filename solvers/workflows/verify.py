"""``verify``: every theorem of docs/theory.md §4 that speaks about a setting, checked against its statement.

**Rows** (``THEOREMS``, one :class:`Theorem` record each: hypotheses ``applies``, statement, ``source``, ``check``).
A *theorem* row states a paper's theorem with the paper's hypotheses (quoted in ``source``, with what could not be
read); where ufm checks a wider statement (the ball, any counts, any tau) that is a separate *conjecture* row; a
*claim* row checks a claim from the literature that is no theorem (BCL's). A certified counterexample *fails* a
theorem or a conjecture (exit code 1: a statement ufm makes is false there) and *refutes* a claim (verdict
``"refuted"``: a finding about another paper's statement; exit code 0).

A *setting* is label counts plus tau, dim, radius, the feature set (sphere or ball), the CE weight decay and a
batching. For each row the setting either misses a hypothesis (verdict ``"not applicable"``, with the
hypothesis it misses) or is checked, and the row reports four things separately:

* ``minimum``: does the predicted geometry attain the global minimum? The *explicit* predicted point (an
  orthogonal frame ``z_i = rho e_{y_i}``, a simplex-ETF collapse, the CE ETF with classifier rows of norm
  ``r_W`` on the class means) is evaluated in float64 and certified by the first-order certificate at that
  point (``solvers.certify``, method ``"first-order"``: valid for any batching and N, tight at a minimiser),
  next to the closed-form minimum.
* ``found``: what float64 projected gradient (``solvers.solve``) reached from random starts (a run that hits
  its step limit is continued once, ``POLISH`` times longer):
  its loss, its gap to the best proved bound, its geometry (class-mean cosines within ``GEOMETRY_TOL`` of the
  prediction and ``NC1 <= NC1_TOL``; for CE also the classifier norms against ``r_W`` and
  ``classifier_mean_distance``, the square root of Zhu et al.'s NC3).
* ``unique``: whether the prediction is the only minimiser. For the orthogonal frame this is decided by the
  batch interaction graph (``ufm.interaction.check_problem``, full batch included: two single-sample classes
  are never forced apart, so the OF is then not unique); for the ETF it is the theorem's "unique up to
  rotation", confronted with the starts that reach the minimum.
* ``alternative``: when the prediction is not the only minimiser, a *verified* other minimiser: the
  interaction witness, or the solver's point snapped to basis directions, whose float64 loss equals the OF
  minimum to ``WITNESS_TOL`` at the setting's tau and at tau = 1 while its Gram differs.

**Verdicts** (``VERDICTS``). A theorem *holds* when its statement holds, whatever else the solver found: "the
OF is a global minimiser" holds when the OF's float64 loss is within ``tol * max(1, |loss|)`` of a proved lower
bound and of the closed form; a solver that stops at another minimiser of the same certified loss is reported
under ``found``, not as a failure. A theorem *fails* only on a certified counterexample:

1. a feasible point whose float64 loss is below the predicted minimum by more than ``tol * max(1, |L*|)``;
2. a proved lower bound above the predicted minimum by more than that tolerance (a bound that some evaluated
   point undercuts by more than the tolerance is not trusted: the row is then inconclusive);
3. for a uniqueness claim ("the OF is the unique minimiser"), a verified different minimiser.

The landscape theorem has no closed form: it holds when the best start attains a proved bound, no converged
start is stuck above it (a start stuck above it is perturbed and rerun once: one that then goes down was at a
saddle or on a flat shelf), and at least half of the starts reach it; a start that stays above is a candidate
(inconclusive), never a counterexample.

**Within the tolerance only.** A row that holds while a point, or the proved bound, lies below the predicted minimum
by more than rounding (``EXACT_TOL``) but within the tolerance says so: ``within_tolerance`` True, ``margin`` (the
lowest evaluated loss or proved bound minus the prediction) and a note in the reason.

Anything proved neither way is *inconclusive*, with the reason (no proved bound, a bound that is not tight,
starts that stop above the bound: possible saddles, not certified counterexamples). A lower bound of None
(the certificate proved nothing) is treated as "not proved".

**Uniqueness is decided by exact points only.** A solver's point within the loss tolerance of the minimum can
sit far from the minimiser where the loss is flat (at a low temperature the terms that separate geometries are
of order ``exp(-rho^2/tau)``, so starts within 1e-6 of the certified bound can have very different class-mean
cosines; docs/verify.md has an example). So starts that disagree with a "unique up to rotation" claim are
reported (``unique["consistent"]``, a note in the reason), never judged; the uniqueness verdicts come from the
OF's exact alternatives (the interaction witness, a snapped point), verified in float64 at two temperatures.

Conventions: float64 for every solve and every loss; SC losses are ufm's mean over anchor slots; tolerances are
relative, ``tol * max(1, |value|)``. An epoch batching (``shuffled:b``, ``binding:b``) is checked on the batches of
its first epoch (the OF bound holds batch by batch, so the OF minimises every epoch's objective alike).
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np

from ufm import Problem, geometry, interaction, objectives, theory
from ufm.batching import epoch_batch_list, is_epoch_scheme, parse_scheme
from ufm.defaults import DEFAULT_STEPS

__all__ = ["Row", "Setting", "Theorem", "THEOREMS", "VERDICTS", "verify", "verify_report", "exit_code", "verify_setting", "found_geometry",
           "applicability", "etf_vectors", "of_point", "etf_point", "SUITE", "run_suite", "random_setting",
           "audit_setting", "PROFILES", "applied_fraction", "audit", "GEOMETRY_TOL", "NC1_TOL", "TOL", "WITNESS_TOL",
           "EXACT_TOL", "DEFAULT_STARTS"]

TOL = 1e-6  # relative tolerance of every loss comparison: tol * max(1, |value|)
GEOMETRY_TOL = 1e-3  # class-mean cosines, classifier norms (relative to r_W), classifier_mean_distance
NC1_TOL = 1e-3  # within-class collapse: NC1 <= this
CANDIDATE_TOL = 5e-2  # a point at the certified minimum this far from the prediction is noted (never judged)
WITNESS_TOL = 1e-9  # a snapped point is a verified minimiser when its loss equals the OF minimum to this
DEFAULT_STARTS = 16
POLISH = 10  # a run that hits its step limit is continued once from where it stopped, for POLISH x the steps
VERDICTS = ("holds", "fails", "inconclusive", "not applicable", "refuted")  # refuted: a conjecture or a claim
# (not a theorem) with a certified counterexample


@dataclass(frozen=True)
class Theorem:
    """One row of ``verify``: a theorem of docs/theory.md §4 as its paper states it, a *conjecture* (a statement
    ufm widens beyond the paper's hypotheses) or a *claim* from the literature, in one record.

    ``key``, ``title``; ``hypotheses``: what ``applies`` checks, in words; ``statement``: what the row checks;
    ``source``: the paper, the theorem's number where it can be read, its hypotheses as the paper states them
    (and what could not be read); ``kind``: ``"theorem"``, ``"conjecture"`` or ``"claim"``; ``applies(case)``:
    the hypothesis the setting misses, in words (``""`` when it applies); ``check(case)``: the :class:`Row`.
    A certified counterexample *fails* a theorem or a conjecture (exit code 1) and *refutes* a claim (a finding
    about another paper's statement: exit code 0). A conjecture's ``applies`` holds on its whole range,
    the theorem's range included (there it checks the same statement, from the same shared computation).
    """

    key: str
    title: str
    hypotheses: str
    statement: str
    source: str = ""
    kind: str = "theorem"
    applies: Callable | None = field(default=None, repr=False, compare=False)
    check: Callable | None = field(default=None, repr=False, compare=False)

    @property
    def claim(self) -> bool:
        """True for a conjecture or a claim: a statement beyond a paper's theorem (counted apart from theorems)."""
        return self.kind != "theorem"


def _later(name: str) -> Callable:
    """The check function ``name`` of this module, looked up when called (the checks are defined below the
    records); ``.target`` names it, so that rows sharing a check share its computation."""
    def run(case):
        return globals()[name](case)

    run.target = name  # type: ignore[attr-defined]  # the function carries its check's name
    return run


# -- the hypotheses (each theorem's ``applies``) --------------------------------------------------------------------
def _classes(case) -> str:
    return "one class: no between-class geometry" if case.K < 2 else ""


def _applies_sc_etf(case, ball_too=False) -> str:
    p, K, d = case.sc, case.K, case.d
    return (_classes(case) or ("counts are imbalanced" if not p.balanced else
            "classes of one sample (no positives: the loss is 0 everywhere)" if p.counts[0] < 2 else
            f"dim {d} < K-1 = {K - 1}: no simplex fits" if d < K - 1 else
            "mini-batches (the theorem is for the full batch)" if not case.full else
            "the ball (Graf et al. state the SC theorem on the sphere; the conjecture row sc-etf-ball checks the ball)"
            if p.constraint != "sphere" and not ball_too else ""))


def _applies_landscape(case) -> str:
    p, K, d = case.sc, case.K, case.d
    return (_classes(case) or (f"dim {d} <= K = {K}" if d <= K else
            "mini-batches (the statement is for the full batch)" if not case.full else
            "the ball (the statement is for the sphere)" if p.constraint != "sphere" else
            "no class has two samples (the loss is 0 everywhere)" if max(p.counts) < 2 else ""))


def _applies_sc_of(case, ball_too=False) -> str:
    if _classes(case):
        return _classes(case)
    if case.plus is None:
        return f"dim {case.d} < K = {case.K}: no orthogonal frame fits"
    if case.sc.constraint != "sphere" and not ball_too:
        return "the ball (Kini et al.'s UFM+ has unit-norm features; the conjecture row sc-of-ball checks the ball)"
    return ""


def _applies_of_unique(case) -> str:
    why = _applies_sc_of(case)
    if why.startswith("the ball"):
        return "the ball (a sample without positives may shrink there; the analysis is for the sphere)"
    return why


def _applies_ce_etf(case) -> str:
    K, d = case.K, case.d
    if _classes(case):
        return _classes(case)
    if not case.ce.balanced or d < K - 1 or not case.full:
        return ("counts are imbalanced" if not case.ce.balanced else f"dim {d} < K-1 = {K - 1}: no simplex fits"
                if d < K - 1 else "mini-batches (the theorem is for the full-batch objective)")
    pred = theory.predict(case.ce)
    return "" if pred.geometry == "etf" else pred.reason


def _applies_bcl(case) -> str:
    K, d = case.K, case.d
    return (_classes(case) or (f"dim {d} < K-1 = {K - 1}: no simplex fits" if d < K - 1 else
            "mini-batches (the claim is for the full batch)" if not case.full else ""))


_GRAF = ("Graf, Hofer, Niethammer, Kwitt (2021), Dissecting supervised contrastive learning (arXiv 2102.08817), "
         "theorem 'Supervised Contrastive Loss': 'Let rho_Z > 0 and Z = S_{rho_Z}^{h-1}. If the labels Y are "
         "balanced, then L_SC(Z; Y) is minimal if and only if' the classes collapse and the class embeddings 'form "
         "an origin-centered regular simplex inscribed in the sphere' (quoted from the authors' slides; the "
         "theorem number in the paper is not readable in the sources ufm has). h >= K-1 is implicit (a K-vertex "
         "regular simplex fits in R^h only then); n >= 2 is implicit (with one sample per class the loss is 0 "
         "everywhere); the loss has rho in place of 1/sqrt(tau) and is full-batch.")
_KINI = ("Kini, Vakilian, Behnia, Gill, Thrampoulidis (2024), Symmetric neural-collapse representations with "
         "supervised contrastive loss: the impact of ReLU and batching (ICLR 2024, arXiv 2306.07960), Theorem 1: "
         "the global minimisers of the UFM with SCL and entry-wise non-negativity (UFM+, unit-norm features) are "
         "an orthogonal frame, for any class counts (d >= K for the frame to fit); the batch results give the "
         "same bound batch by batch and necessary and sufficient conditions on the batches for the OF to be the "
         "unique minimiser (the exact statements are read from the abstract and a summary; the theorem text "
         "itself is not in the sources ufm has).")
_BEHNIA = ("Behnia, Thrampoulidis (2024), Supervised contrastive representation learning: landscape analysis with "
           "unconstrained features (arXiv 2402.18884): all local minima of the SC UFM are global and the minimiser "
           "is unique up to rotation, for embedding dimension d > k and under a condition on tau that the authors "
           "call sufficient, not necessary (and conjecture can be relaxed). The exact condition on tau, and "
           "whether classes of one sample are allowed, cannot be read from the sources ufm has (abstract and "
           "summaries), so ufm cannot tell whether a setting meets the theorem's hypotheses: it checks the wider "
           "statement as a conjecture.")
_ZHU22 = ("Zhu, Wang, Chen, Chen, Jiang (2022), Balanced contrastive learning for long-tailed visual recognition "
          "(CVPR 2022): the claim that class-averaging and class-complement (the class prototypes in every batch) "
          "keep the simplex geometry under imbalance; not a theorem of a paper ufm can quote, so a claim row.")

THEOREMS = (
    Theorem("sc-etf", "SC: simplex ETF (Graf et al. 2021)",
            "SC, balanced counts n >= 2, sphere of radius rho, d >= K-1, full batch, no ReLU",
            "the within-class collapse onto a simplex ETF is a global minimiser, of loss "
            "log(n-1 + (N-n) exp(-K rho^2/((K-1) tau))), unique up to rotation",
            _GRAF, "theorem", _applies_sc_etf, _later("_sc_etf")),
    Theorem("sc-etf-ball", "SC: simplex ETF on the sphere or the ball (conjecture, widens Graf et al. 2021)",
            "SC, balanced counts n >= 2, sphere or ball of radius rho, d >= K-1, full batch, no ReLU",
            "as sc-etf, with the ball allowed: the ETF on the sphere of radius rho is a global minimiser over the "
            "ball too", _GRAF + " ufm widens it to the ball.", "conjecture",
            lambda case: _applies_sc_etf(case, ball_too=True), _later("_sc_etf")),
    Theorem("sc-landscape", "SC landscape for any counts and any tau (conjecture, widens Behnia & Thrampoulidis "
            "2024)",
            "SC without ReLU, any counts (some class with 2 samples; singleton classes allowed), any tau, sphere, "
            "d > K, full batch",
            "every local minimum is global and the minimiser is unique up to rotation; checked from many random "
            "starts against a proved lower bound", _BEHNIA, "conjecture", _applies_landscape,
            _later("_sc_landscape")),
    Theorem("sc-of", "SC + ReLU: orthogonal frame (Kini et al. 2024, Theorem 1)",
            "SC, non-negative features (UFM+) on the sphere, any counts, d >= K, full batch or any batch set",
            "the orthogonal frame z_i = rho e_{y_i} is a global minimiser, of loss "
            "(1/T) sum_B sum_{c: n_Bc >= 2} n_Bc log(n_Bc - 1 + (|B| - n_Bc) exp(-rho^2/tau))",
            _KINI, "theorem", _applies_sc_of, _later("_sc_of")),
    Theorem("sc-of-ball", "SC + ReLU: orthogonal frame on the sphere or the ball (conjecture, widens Kini et al. "
            "2024)",
            "SC, non-negative features on the sphere or the ball, any counts, d >= K, full batch or any batch set",
            "as sc-of, with the ball allowed: the OF on the sphere of radius rho is a global minimiser over the "
            "ball too", _KINI + " ufm widens it to the ball.", "conjecture",
            lambda case: _applies_sc_of(case, ball_too=True), _later("_sc_of")),
    Theorem("of-unique", "SC + ReLU: the OF is unique iff the batch graph forces it (Kini et al. 2024)",
            "as for sc-of, on the sphere",
            "the OF is the unique minimiser (as a Gram matrix) iff the batch interaction graph forces it "
            "(conditions (a), (b); ufm.interaction); otherwise a different embedding has the same loss",
            _KINI, "theorem", _applies_of_unique, _later("_of_unique")),
    Theorem("ce-etf", "L2-regularised CE: simplex ETF, classifier radius r_W (Graf et al. 2021)",
            "CE, balanced counts, ball (or sphere) of radius rho, d >= K-1, weight decay lambda > 0, no bias, "
            "full batch",
            "features collapse onto a simplex ETF of radius rho, classifier rows on a simplex of radius r_W aligned "
            "with it (2 lambda r_W (exp(K rho r_W/(K-1)) + K - 1) = rho); minimum "
            "log(1 + (K-1) exp(-K rho r_W/(K-1))) + lambda K r_W^2; unique up to rotation",
            "Graf et al. (2021), theorem 'Cross-Entropy' and its corollary 'L2-Regularized Cross-Entropy': 'Let Z = "
            "{z in R^h : ||z|| <= rho_Z}. If labels Y are balanced', the regularised loss is minimal iff the "
            "classes collapse onto a regular simplex inscribed in the sphere of radius rho_Z and the weights form a "
            "simplex of radius r_W(rho_Z, lambda) aligned to it (quoted from the authors' slides). On the sphere "
            "the statement follows (every minimiser over the ball lies on the sphere), so it is no widening.",
            "theorem", _applies_ce_etf, _later("_ce_etf")),
    Theorem("bcl-etf", "BCL: simplex ETF for any counts (the claim of Zhu et al. 2022)",
            "the balanced contrastive loss of Zhu et al. (class-averaging and class-complement: the K class "
            "prototypes are variables on the features' sphere (or ball) and join the batch), one view, any counts, "
            "d >= K-1, full batch, no ReLU",
            "a claim, not a theorem: the simplex-ETF collapse, with each prototype at its class's vertex, is a "
            "global minimiser of BCL whatever the class counts, of loss log(1 + (K-1) exp(-K rho^2/((K-1) tau))); "
            "a certified point below it refutes the claim", _ZHU22, "claim", _applies_bcl, _later("_bcl_etf")),
)
_TITLE = {t.key: t for t in THEOREMS}


@dataclass(frozen=True)
class Setting:
    """What one ``verify`` run checks; validated on construction (a bad field raises one ``ValueError`` or
    ``TypeError`` whose message starts with the field's name; the loss-specific checks follow in ``ufm.Problem``
    when the rows are built). Lists given for ``counts`` and ``batches`` are stored as tuples.

    Args:
      counts: samples per class, integers >= 1.
      tau: the SC temperature, > 0.
      dim: the features' dimension >= 1 (None: ``K + 2`` once :meth:`resolved`).
      radius: the sphere's or ball's radius, > 0.
      constraint: ``"sphere"`` or ``"ball"``.
      weight_decay: CE's lambda_W (None: CE's default).
      batching: a batching scheme (``"full"``, ``"fixed:b"``, ...); ``"explicit"`` with ``batches``.
      batches: explicit batches (a tuple of index tuples) instead of the scheme ``batching``.
      seed: the random starts and the scheme's ``batch_seed``, in 0..2^32-1.
    """

    counts: tuple
    tau: float = 0.5
    dim: int | None = None
    radius: float = 1.0
    constraint: str = "sphere"
    weight_decay: float | None = None
    batching: str = "full"
    batches: tuple | None = None
    seed: int = 0

    def __post_init__(self):
        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

        def real(name, v, positive=True):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise TypeError(f"{name}: must be a number, got {v!r}")
            if not math.isfinite(float(v)) or (positive and not float(v) > 0) or float(v) < 0:
                raise ValueError(f"{name}: must be a finite number {'>' if positive else '>='} 0, got {v!r}")

        if isinstance(self.counts, (str, bytes)) or not hasattr(self.counts, "__iter__"):
            raise TypeError(f"counts: must be a list of integers, got {self.counts!r}")
        counts = tuple(self.counts)
        if not counts:
            raise ValueError("counts: empty; there are no classes")
        for c in counts:
            if not is_int(c):
                raise TypeError(f"counts: must hold integers, got {c!r}")
            if c < 1:
                raise ValueError(f"counts: every class needs >= 1 sample, got {c}")
        object.__setattr__(self, "counts", tuple(int(c) for c in counts))
        real("tau", self.tau)
        real("radius", self.radius)
        if self.weight_decay is not None:
            real("weight_decay", self.weight_decay, positive=False)
        if self.dim is not None and (not is_int(self.dim) or self.dim < 1):
            raise ValueError(f"dim: must be an integer >= 1, got {self.dim!r}")
        if self.constraint not in ("sphere", "ball"):
            raise ValueError(f"constraint: must be one of sphere, ball, got {self.constraint!r}")
        if not isinstance(self.batching, str):
            raise TypeError(f"batching: must be a text like 'fixed:4', got {self.batching!r}")
        if not is_int(self.seed) or not 0 <= self.seed <= 2**32 - 1:
            raise ValueError(f"seed: must be an integer in 0..2^32-1, got {self.seed!r}")
        if self.batches is not None:
            try:
                batches = tuple(tuple(B) for B in self.batches)
            except TypeError:
                raise TypeError(f"batches: must be a list of index lists, got {self.batches!r}") from None
            if any(not is_int(i) for B in batches for i in B):
                raise TypeError("batches: every index must be an integer")
            object.__setattr__(self, "batches", tuple(tuple(int(i) for i in B) for B in batches))

    def resolved(self) -> "Setting":
        """``dim`` None becomes ``K + 2`` (room for every theorem: d > K for the landscape); ``counts`` and
        ``batches`` become tuples."""
        counts = tuple(int(c) for c in self.counts)
        dim = len(counts) + 2 if self.dim is None else self.dim
        batches = None if self.batches is None else tuple(tuple(int(i) for i in B) for B in self.batches)
        return Setting(counts, float(self.tau), dim, float(self.radius), self.constraint, self.weight_decay,
                       "explicit" if batches is not None else self.batching, batches, int(self.seed))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["counts"] = list(self.counts)
        d["batches"] = None if self.batches is None else [list(B) for B in self.batches]
        return d

    def describe(self) -> str:
        batching = (f"{len(self.batches)} explicit batches" if self.batches is not None else
                    "full batch" if self.batching == "full" else f"batching {self.batching} (seed {self.seed})")
        wd = "" if self.weight_decay is None else f", CE weight decay {self.weight_decay:g}"
        return (f"counts {','.join(map(str, self.counts))}, tau {self.tau:g}, dim {self.dim}, {self.constraint} of "
                f"radius {self.radius:g}, {batching}{wd}")

    def command(self, steps: int = DEFAULT_STEPS, starts: int = DEFAULT_STARTS, tol: float = TOL) -> str:
        """The ``ufm verify`` command line that checks this setting again (floats written exactly)."""
        parts = ["ufm", "verify", "--counts", ",".join(map(str, self.counts)), "--tau", repr(float(self.tau)),
                 "--dim", str(self.dim), "--radius", repr(float(self.radius)), "--constraint", self.constraint]
        if self.weight_decay is not None:
            parts += ["--weight-decay", repr(float(self.weight_decay))]
        if self.batches is not None:
            parts += ["--batches", '"' + ";".join(",".join(map(str, B)) for B in self.batches) + '"']
        elif self.batching != "full":
            parts += ["--batching", self.batching]
        parts += ["--seed", str(self.seed)]
        if steps != DEFAULT_STEPS:
            parts += ["--steps", str(steps)]
        if starts != DEFAULT_STARTS:
            parts += ["--starts", str(starts)]
        if tol != TOL:
            parts += ["--tol", repr(float(tol))]
        return " ".join(parts)


@dataclass
class Row:
    """One theorem's verdict in one setting (module doc). ``verdict`` in ``VERDICTS``; ``minimum``, ``found``,
    ``unique``, ``alternative``: JSON-ready dicts (None where they do not apply); ``counterexample``: the
    certified counterexample when the verdict is ``"fails"`` or ``"refuted"``; ``kind``: the record's
    (``"theorem"``, ``"conjecture"``, ``"claim"``); ``margin``: the lowest evaluated loss minus the predicted
    minimum (None without a closed form); ``within_tolerance``: True when the verdict holds only within the
    tolerance, some evaluated point lying below the predicted minimum (by ``-margin``, more than rounding)."""

    key: str
    theorem: str
    hypotheses: str
    prediction: str = ""
    verdict: str = "not applicable"
    reason: str = ""
    minimum: dict | None = None
    found: dict | None = None
    unique: dict | None = None
    alternative: dict | None = None
    counterexample: dict | None = None
    setting: dict = field(default_factory=dict)
    seconds: float = 0.0
    local_minimum: dict | None = None
    kind: str = "theorem"
    within_tolerance: bool | None = None
    margin: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# -- predicted points ----------------------------------------------------------------------------------------------
def etf_vectors(K: int, dim: int) -> np.ndarray:
    """``(K, dim)`` unit vectors of a regular simplex (pairwise cosine ``-1/(K-1)``) in the first ``K-1``
    coordinates (needs ``dim >= K-1``): the centred standard basis, expressed in an orthonormal basis of its span."""
    if dim < K - 1:
        raise ValueError(f"dim {dim} < K-1 = {K - 1}: no simplex ETF fits")
    C = np.eye(K) - 1.0 / K
    _, _, Vt = np.linalg.svd(C)
    V = C @ Vt[: K - 1].T
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    out = np.zeros((K, dim))
    out[:, : K - 1] = V
    return out


def of_point(problem: Problem) -> np.ndarray:
    """The orthogonal frame ``z_i = rho e_{y_i}`` ``(N, d)``."""
    return problem.radius * np.eye(problem.dim)[problem.label_array]


def etf_point(problem: Problem, norm: float | None = None) -> np.ndarray:
    """The simplex-ETF collapse ``z_i = rho v_{y_i}`` ``(N, d)`` (``norm`` instead of ``rho`` when given)."""
    rho = problem.radius if norm is None else norm
    return rho * etf_vectors(problem.K, problem.dim)[problem.label_array]


class _Point:
    """A point in the shape ``solvers.certify`` takes: ``Z`` and, for CE, ``W`` and ``b`` (None); for BCL the
    prototypes ``C``."""

    def __init__(self, Z, W=None, C=None):
        self.Z, self.W, self.b = np.asarray(Z, np.float64), None if W is None else np.asarray(W, np.float64), None
        self.C = None if C is None else np.asarray(C, np.float64)


# -- geometry ------------------------------------------------------------------------------------------------------
def found_geometry(mean_cosines) -> tuple[str, float, float]:
    """``("etf"|"of"|"other", distance to ETF, distance to OF)``: max-abs distances of the mean-cosine
    matrix to the ETF Gram and to the identity (``GEOMETRY_TOL`` decides the name)."""
    C = np.asarray(mean_cosines)
    K = C.shape[0]
    d_etf = float(np.abs(C - theory.etf_gram(K)).max()) if K > 1 else 0.0
    d_of = float(np.abs(C - np.eye(K)).max())
    name = "etf" if d_etf <= GEOMETRY_TOL else "of" if d_of <= GEOMETRY_TOL else "other"
    return name, d_etf, d_of


def _geometry(problem, Z, target: str) -> dict:
    """Class-mean cosines (of the normalised rows for SC), their distance to ``target`` (``"etf"``/``"of"``)
    and NC1; ``is_predicted`` when both are within tolerance."""
    X = geometry.normalize_rows(Z) if objectives.of(problem).normalize_rows else np.asarray(Z, np.float64)
    labels, K = problem.label_array, problem.K
    cos = geometry.mean_cosines(X, labels, K)
    name, d_etf, d_of = found_geometry(cos)
    nc1 = geometry.nc1(X, labels, K)
    dist = d_etf if target == "etf" else d_of
    return {"geometry": name, "distance_to_etf": d_etf, "distance_to_of": d_of, "nc1": nc1,
            "mean_cosines": cos.tolist(), "is_predicted": bool(dist <= GEOMETRY_TOL and nc1 <= NC1_TOL)}


# -- losses and certificates -----------------------------------------------------------------------------------------
def _loss(problem, Z, W=None, C=None) -> float:
    """The objective at a point, in float64, after projecting ``Z`` (and BCL's prototypes ``C``) onto the
    feasible set."""
    from ..first_order import solution_loss

    return float(solution_loss(problem, np.asarray(Z, np.float64), None if W is None else np.asarray(W, np.float64),
                               C=C))


def _certify(problem, point, method, tol):
    """``solvers.certify.certify`` (one place, so that tests can replace it)."""
    from ..certificate import certify

    return certify(problem, point, method=method, tol=tol)


def _bound(problem, point, method: str, tol: float) -> dict:
    """A proved lower bound on ``problem``'s minimum from ``solvers.certify`` at ``point``: ``lower_bound``
    (None when nothing was proved, with ``why``), ``solver_bound``, ``bound_margin``, ``method``, ``status``,
    ``seconds``. A certificate that raises proves nothing; its message is the ``why``."""
    start = time.perf_counter()
    try:
        cert = _certify(problem, point, method, tol)
    except Exception as e:  # any failure of a certificate means "not proved", with the reason shown
        return {"lower_bound": None, "solver_bound": None, "bound_margin": None, "method": method,
                "status": "error", "why": f"{type(e).__name__}: {e}", "seconds": time.perf_counter() - start}
    lb = cert.lower_bound
    lb = None if lb is None or not math.isfinite(float(lb)) else float(lb)
    details = getattr(cert, "details", None) or {}
    why = details.get("why") if lb is None else None
    if lb is None and not why:
        why = f"the certificate proved no bound (status {getattr(cert, 'status', None)!r})"
    return {"lower_bound": lb, "solver_bound": getattr(cert, "solver_bound", None),
            "bound_margin": getattr(cert, "bound_margin", None), "method": getattr(cert, "method", method),
            "status": getattr(cert, "status", None), "why": why, "seconds": time.perf_counter() - start}


def _scale(tol, value) -> float:
    return tol * max(1.0, abs(value))


def _best_bound(bounds, points, tol):
    """The largest bound that no evaluated point undercuts by more than the tolerance, and the distrusted ones.
    ``bounds``: dicts from :func:`_bound`; ``points``: ``(source, loss)``."""
    valid, invalid = [], []
    for b in bounds:
        lb = b.get("lower_bound")
        if lb is None:
            continue
        under = [(s, v) for s, v in points if v < lb - _scale(tol, v)]
        (invalid if under else valid).append((b, under))
    best = max(valid, key=lambda t: t[0]["lower_bound"])[0] if valid else None
    return best, invalid


def _minimum_dict(point_name, loss, closed_form, best, bounds, tol) -> dict:
    """The ``minimum`` sub-object: the point's loss against the closed form and the best proved bound."""
    lb = None if best is None else best["lower_bound"]
    gap = None if lb is None else loss - lb
    why = None
    if lb is None:
        whys = [b.get("why") for b in bounds if b.get("why")]
        why = "; ".join(whys) if whys else "no certificate proved a bound"
    return {"point": point_name, "loss": loss, "closed_form": closed_form,
            "loss_minus_closed_form": None if closed_form is None else loss - closed_form,
            "lower_bound": lb, "method": None if best is None else best["method"],
            "solver_bound": None if best is None else best.get("solver_bound"),
            "bound_margin": None if best is None else best.get("bound_margin"),
            "gap": gap, "certified": None if gap is None else bool(gap <= _scale(tol, loss)), "why": why,
            "bounds": [{k: b.get(k) for k in ("method", "lower_bound", "status", "why")} for b in bounds]}


def _counterexample(predicted, points, best, tol):
    """A certified counterexample to "the minimum is ``predicted``" (module doc, kinds 1 and 2), or None."""
    if predicted is None:
        return None
    s = _scale(tol, predicted)
    below = [(src, v) for src, v in points if v < predicted - s]
    if below:
        src, v = min(below, key=lambda t: t[1])
        return {"kind": "point below the predicted minimum", "source": src, "loss": v, "predicted_minimum": predicted,
                "difference": v - predicted, "tolerance": s}
    if best is not None and best["lower_bound"] > predicted + s:
        return {"kind": "proved lower bound above the predicted minimum", "source": f"{best['method']} certificate",
                "lower_bound": best["lower_bound"], "predicted_minimum": predicted,
                "difference": best["lower_bound"] - predicted, "tolerance": s}
    return None


def _judge_minimum(row: Row, minimum: dict, predicted, points, best, invalid, tol) -> bool:
    """Set ``row``'s verdict from the ``minimum`` evidence; True when it holds."""
    cx = _counterexample(predicted, points, best, tol)
    if cx is not None:
        row.verdict, row.counterexample = "fails", cx
        what = (f"{cx['source']} has float64 loss {cx['loss']:.10f}, below the predicted minimum {predicted:.10f} by "
                f"{-cx['difference']:.1e}" if "loss" in cx else
                f"the proved lower bound {cx['lower_bound']:.10f} lies above the predicted minimum {predicted:.10f} "
                f"by {cx['difference']:.1e}")
        row.reason = f"certified counterexample: {what}"
        return False
    loss = minimum["loss"]
    if predicted is not None and abs(loss - predicted) > _scale(tol, predicted):
        row.verdict = "inconclusive"
        row.reason = (f"the predicted point's loss {loss:.10f} differs from the closed form {predicted:.10f} by "
                      f"{loss - predicted:.1e}, and no certificate decides which is the minimum")
        return False
    if invalid and best is None:
        (b, under), = invalid[:1]
        row.verdict = "inconclusive"
        row.reason = (f"the {b['method']} bound {b['lower_bound']:.10f} lies above the loss of {under[0][0]} "
                      f"({under[0][1]:.10f}): not a valid lower bound, so nothing is proved")
        return False
    if best is None:
        row.verdict, row.reason = "inconclusive", f"no proved lower bound: {minimum['why']}"
        return False
    if not minimum["certified"]:
        row.verdict = "inconclusive"
        row.reason = (f"certificate not tight: the predicted point is {minimum['gap']:.1e} above the proved bound "
                      f"({best['method']}), tolerance {_scale(tol, loss):.1e}")
        return False
    row.verdict = "holds"
    row.reason = (f"the predicted point attains the certified minimum (gap {minimum['gap']:.1e}, {best['method']} "
                  "certificate)" + ("" if predicted is None else ", which equals the closed form"))
    _margin(row, predicted, points, best)
    return True


EXACT_TOL = 1e-12  # relative: a point or a proved bound this close to the prediction is equal to it to rounding


def _margin(row: Row, predicted, points, best=None):
    """``row.margin``: how far below ``predicted`` the evidence leaves room for the minimum (the lowest evaluated
    loss, or the proved bound when lower, minus ``predicted``); ``row.within_tolerance``: True when that is more
    than ``EXACT_TOL * max(1, |predicted|)`` below, so that the verdict holds only within the tolerance, with a
    note in the reason saying whether a point lies below or only the bound leaves room."""
    if predicted is None or not points:
        return
    src, low = min(points, key=lambda t: t[1])
    lb = None if best is None else best.get("lower_bound")
    row.margin = float(min(low, lb) - predicted) if lb is not None else float(low - predicted)
    row.within_tolerance = bool(row.margin < -EXACT_TOL * max(1.0, abs(predicted)))
    if not row.within_tolerance:
        return
    if low - predicted < -EXACT_TOL * max(1.0, abs(predicted)):
        row.reason += (f"; WITHIN THE TOLERANCE ONLY: {src} lies {predicted - low:.1e} below the predicted "
                       "minimum (below the tolerance, so not a certified counterexample; the prediction is not "
                       "shown to be exact)")
    else:
        row.reason += (f"; WITHIN THE TOLERANCE ONLY: the proved bound lies {predicted - lb:.1e} below the "
                       "predicted minimum, so a point that much lower is not ruled out (the prediction is not "
                       "shown to be exact)")


# -- one setting ---------------------------------------------------------------------------------------------------
def _pgd_found(problem, sol, best, target, tol, what: str) -> dict:
    """The ``found`` sub-object for a PGD solution: loss, gap to the best proved bound, geometry."""
    loss = _loss(problem, sol.Z, sol.W, getattr(sol, "C", None))
    lb = None if best is None else best["lower_bound"]
    gap = None if lb is None else loss - lb
    out = {"solver": what, "seed": sol.seed, "steps": sol.steps, "converged": sol.converged, "loss": loss,
           "lower_bound": lb, "gap": gap, "at_minimum": None if gap is None else bool(gap <= _scale(tol, loss))}
    out.update(_geometry(problem, sol.Z, target))
    return out


def _polish(problem, sol, steps):
    """``sol``, or, when it hit the step limit, its continuation for ``POLISH * steps`` more steps (float64, from
    its own point; the seed is kept). Small problems at a low temperature converge slowly, and one long run from
    the best point is far cheaper than long runs from every start."""
    from .. import solve

    if sol.converged:
        return sol
    init = {"Z": sol.Z} if sol.W is None else {"Z": sol.Z, "W": sol.W, "b": sol.b}
    if getattr(sol, "C", None) is not None:
        init["C"] = sol.C
    more = solve(problem, steps=POLISH * steps, seed=sol.seed, dtype="float64", init=init)
    more.steps += sol.steps
    return more if more.loss <= sol.loss else sol


def _snap_witness(problem, Z, tol_witness=WITNESS_TOL):
    """A UFM+ solution snapped to basis directions (each row to ``rho e_j``, ``j`` its largest entry): when its
    structure is not the OF's and its float64 loss equals the OF minimum to ``tol_witness`` at the problem's tau
    and at tau = 1 (an exact equality case of the bound, not a near-minimiser), a verified other mininiser."""
    col = np.argmax(np.asarray(Z), axis=1)
    labels, K = problem.label_array, problem.K
    per_class = [sorted(set(col[labels == c].tolist())) for c in range(K)]
    per_dir = {}
    for c, dirs in enumerate(per_class):
        for j in dirs:
            per_dir.setdefault(j, []).append(c)
    if all(len(d) == 1 for d in per_class) and all(len(v) == 1 for v in per_dir.values()):
        return None  # the OF, up to a relabelling of the directions
    Zs = problem.radius * np.eye(problem.dim)[col]
    Zof = of_point(problem)
    gram_change = float(np.abs(Zs @ Zs.T - Zof @ Zof.T).max())
    gaps = []
    loss = of_loss = None
    for t in dict.fromkeys((1.0, float(problem.tau))):
        p = problem.replace(tau=t)
        ref = theory.predict(p).loss
        val = _loss(p, Zs)
        gaps.append(abs(val - ref) / max(1.0, abs(ref)))
        if t == float(problem.tau):
            loss, of_loss = val, ref
    shared = [f"classes {', '.join(map(str, v))} share direction e_{j}" for j, v in sorted(per_dir.items()) if len(v) > 1]
    split = [f"class {c} spreads over {len(d)} directions" for c, d in enumerate(per_class) if len(d) > 1]
    return {"kind": "snapped PGD point", "changes": "; ".join(shared + split), "loss": loss, "of_loss": of_loss,
            "loss_gap": loss - of_loss, "gram_change": gram_change,
            "verified": bool(max(gaps) <= tol_witness and gram_change > 1e-6)}


class _Case:
    """The problems of one setting and the work the rows share (PGD runs, certificates), computed once."""

    def __init__(self, setting: Setting, steps: int, starts: int, tol: float):
        self.setting, self.steps, self.starts, self.tol = setting, steps, starts, tol
        s = setting
        self.epoch_note = ""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base = Problem(counts=s.counts, tau=s.tau, dim=s.dim, constraint=s.constraint, radius=s.radius,
                           batching=s.batching if s.batches is None else "explicit", batches=s.batches,
                           batch_seed=s.seed)
            if is_epoch_scheme(base):
                batches = tuple(tuple(B) for B in epoch_batch_list(base, 0))
                self.epoch_note = (f"{s.batching} draws new batches every epoch: checked on the {len(batches)} batches "
                                   "of epoch 0 (the OF bound holds batch by batch, so every epoch's objective alike)")
                base = base.replace(batching="explicit", batches=batches)
            self.ce = Problem(counts=s.counts, loss="ce", dim=s.dim, constraint=s.constraint, radius=s.radius,
                              weight_decay=s.weight_decay)
            self.bcl = base.replace(loss="bcl")
        if s.constraint not in ("sphere", "ball"):
            raise ValueError(f"constraint must be 'sphere' or 'ball' for verify, got {s.constraint!r}")
        self.sc = base
        self.K, self.d = base.K, base.dim
        self.full = base.batches is None and parse_scheme(base.batching).name == "full"
        self.plus = base.replace(nonneg=True) if self.d >= self.K else None
        self._cache = {}

    def cached(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    # shared work
    def sc_starts(self):
        """``starts`` float64 PGD runs of the SC problem (no ReLU), seeds ``seed .. seed + starts - 1``, one after
        the other (one compiled program; on a CPU faster than a vmap over the starts, which runs every start as
        long as the slowest). A run that hits the step limit above the proved bound is polished
        (:func:`_polish`): a start still descending is no evidence about local minima either way."""
        return self.cached("sc_starts", self._sc_starts)

    def _sc_starts(self):
        from .. import solve

        sols = [solve(self.sc, steps=self.steps, seed=self.setting.seed + i, dtype="float64")
                for i in range(self.starts)]
        k = int(np.argmin([s.loss for s in sols]))
        sols[k] = _polish(self.sc, sols[k], self.steps)
        self._cache["sc_relax"] = bound = _bound(self.sc, sols[k], "auto", self.tol)
        lb = bound["lower_bound"]
        for i, s in enumerate(sols):
            if i != k and not s.converged and (lb is None or s.loss - lb > _scale(self.tol, s.loss)):
                sols[i] = _polish(self.sc, s, self.steps)
        return sols

    def sc_best(self):
        return min(self.sc_starts(), key=lambda s: s.loss)

    def sc_relaxation(self):
        """The convex-relaxation bound of the full-batch SC problem at the best start (``method="auto"``: the
        reduced program)."""
        self.sc_starts()
        return self._cache["sc_relax"]

    def of_certificate(self):
        return self.cached("of_cert", lambda: _bound(self.plus, _Point(of_point(self.plus)), "first-order", self.tol))

    def of_loss(self):
        return self.cached("of_loss", lambda: _loss(self.plus, of_point(self.plus)))

    def plus_solution(self):
        from .. import solve

        return self.cached("plus_sol", lambda: _polish(self.plus, solve(
            self.plus, steps=self.steps, seed=self.setting.seed, dtype="float64"), self.steps))

    def interaction(self):
        return self.cached("interaction", lambda: interaction.check_problem(self.plus))

    def snapped(self):
        return self.cached("snapped", lambda: _snap_witness(self.plus, self.plus_solution().Z))


def _why_not(case: _Case, key: str) -> str:
    """The hypothesis of row ``key`` that the setting misses, in words (``""`` when it applies): its record's
    ``applies``."""
    return _TITLE[key].applies(case)  # type: ignore[misc]  # every record in THEOREMS has one


def applicability(setting: Setting) -> dict:
    """``{theorem key: the hypothesis the setting misses, or ""}`` without solving anything. Raises
    ``ValueError`` for a bad setting."""
    case = _Case(setting.resolved(), 1, 1, TOL)
    return {t.key: _why_not(case, t.key) for t in THEOREMS}


def _not_applicable(row, why):
    row.verdict, row.reason = "not applicable", why
    return row


def _row(key) -> Row:
    t = _TITLE[key]
    return Row(key, t.title, t.hypotheses, kind=t.kind)


def _sc_etf(case: _Case) -> Row:
    row = _row("sc-etf")
    p, K, tol = case.sc, case.K, case.tol
    n = p.counts[0]
    predicted = theory.sc_etf_loss(n, K, p.tau, p.radius)
    row.prediction = f"simplex ETF collapse; minimum {predicted:.10f}"
    P = etf_point(p)
    p_loss = _loss(p, P)
    bounds = [_bound(p, _Point(P), "first-order", tol), case.sc_relaxation()]
    sols = case.sc_starts()
    points = [("the predicted ETF point", p_loss)] + [(f"PGD start seed {s.seed}", _loss(p, s.Z)) for s in sols]
    best, invalid = _best_bound(bounds, points, tol)
    row.minimum = _minimum_dict("simplex-ETF collapse z_i = rho v_{y_i}", p_loss, predicted, best, bounds, tol)
    _judge_minimum(row, row.minimum, predicted, points, best, invalid, tol)
    row.found = _pgd_found(p, case.sc_best(), best, "etf", tol, f"float64 PGD, best of {len(sols)} starts")
    # uniqueness up to rotation: every start at the certified minimum should be an ETF collapse
    at_min = [s for s in sols if best is not None and _loss(p, s.Z) - best["lower_bound"] <= _scale(tol, p_loss)]
    others = [(s, g) for s in at_min for g in [_geometry(p, s.Z, "etf")]
              if g["distance_to_etf"] > CANDIDATE_TOL or g["nc1"] > CANDIDATE_TOL]
    row.unique = {"claim": True, "statement": "unique up to rotation (the theorem)", "starts_at_minimum": len(at_min),
                  "starts_at_minimum_far_from_etf": len(others), "candidate_tol": CANDIDATE_TOL}
    if others:
        s, g = others[0]
        row.alternative = {"kind": "PGD start at the certified minimum with another geometry (not verified)",
                           "seed": s.seed, "loss": _loss(p, s.Z), "distance_to_etf": g["distance_to_etf"],
                           "nc1": g["nc1"], "verified": False}
        row.reason += (f"; note: {len(others)} start(s) within the tolerance of the minimum are not ETF collapses "
                       f"(seed {s.seed}: max |cos - ETF| {g['distance_to_etf']:.1e}, NC1 {g['nc1']:.1e}): a flat "
                       "minimum or a candidate against uniqueness, not an exact minimiser")
    row.unique["consistent"] = not others
    return row


ESCAPE_SCALE = 1e-2  # the perturbation (relative to rho) of the escape test of a start stuck above the bound
ESCAPE_MAX = 3  # starts given the escape test, at most


def _escape(case: _Case, sol) -> float:
    """A converged start above the bound, perturbed by ``ESCAPE_SCALE * rho`` (seeded) and run again for
    ``POLISH * steps``: the loss it reaches. A saddle or a flat shelf lets the run go down; a strict local minimum
    brings it back."""
    from .. import solve

    p = case.sc
    rng = np.random.default_rng([case.setting.seed, sol.seed])
    Z = sol.Z + ESCAPE_SCALE * p.radius * rng.standard_normal(sol.Z.shape)
    return _loss(p, solve(p, steps=POLISH * case.steps, seed=sol.seed, dtype="float64", init=Z).Z)


LOCAL_MAX = 3  # starts stuck above the certified minimum given the local certificate (the lowest first)
LOCAL_SIZE_MAX = 600  # N * dim beyond which the local certificate is skipped (its cost grows as (N dim)^3)


def _landscape_proofs(row: Row, case: _Case, sols, candidates, global_Z) -> bool:
    """Run the local certificate (``solvers.local``) on the lowest ``LOCAL_MAX`` starts stuck above the certified
    minimum. A proved strict local minimum whose loss interval lies above a proved upper bound on the loss of the
    certified global solution ``global_Z`` is a certified counterexample: the row fails and ``local_minimum``
    holds its certificate (returns True). Records every certificate in ``row.found["local_certificates"]`` and
    the number of proved saddles in ``row.found["saddles_proved"]``."""
    from ..local import certify_local, loss_upper

    p = case.sc
    row.found["local_certificates"], row.found["saddles_proved"] = [], 0
    if p.N * p.dim > LOCAL_SIZE_MAX:
        row.found["local_certificates_skipped"] = f"N * dim = {p.N * p.dim} > {LOCAL_SIZE_MAX}"
        return False
    by_seed = {s.seed: s for s in sols}
    global_loss = loss_upper(p, global_Z)
    certs = []
    for st in sorted(candidates, key=lambda st: st["loss"])[:LOCAL_MAX]:
        c = certify_local(p, by_seed[st["seed"]].Z, global_loss=global_loss).to_dict()
        certs.append({"seed": st["seed"], **c})
    row.found["local_certificates"] = certs
    # a start "stopped at" a proved saddle only when the polish barely moved it
    row.found["saddles_proved"] = sum(c["kind"] == "saddle" and c["gram_change"] <= 1e-3 for c in certs)
    spurious = [c for c in certs if c["proved"] and c["spurious"]]
    if not spurious:
        return False
    c = spurious[0]
    lo, hi = c["loss_interval"]
    row.verdict, row.local_minimum = "fails", c
    row.counterexample = {"kind": "proved spurious strict local minimum", "seed": c["seed"],
                          "loss_interval": c["loss_interval"], "global_loss_upper": global_loss,
                          "hessian_min_eig_lower": c["hessian_min_eig_lower"], "radius": c["radius"]}
    near = "" if c["gram_change"] <= 1e-6 else f" (the Newton polish moved its Gram by {c['gram_change']:.1e})"
    row.reason = (f"certified counterexample: start seed {c['seed']} stopped at a proved strict local minimum{near} "
                  f"(loss in [{lo:.10f}, {hi:.10f}], smallest Hessian eigenvalue on the slice >= "
                  f"{c['hessian_min_eig_lower']:.3g} within radius {c['radius']:.1e}) above a certified global "
                  f"solution of loss <= {global_loss:.10f}: a local minimum that is not global")
    return True


def _proofs_note(found) -> str:
    certs = found.get("local_certificates") or []
    if not certs:
        return ""
    saddles = sum(c["kind"] == "saddle" for c in certs)
    whys = sorted({c["why"] for c in certs if c["kind"] != "saddle" and c["why"]})
    return (f"; local certificates: {saddles} of {len(certs)} proved saddles" +
            (f", not proved: {'; '.join(whys)}" if whys else ""))


def _sc_landscape(case: _Case) -> Row:
    row = _row("sc-landscape")
    p, K, tol = case.sc, case.K, case.tol
    why = _why_not(case, "sc-landscape")
    if why:
        return _not_applicable(row, why)
    row.prediction = "every local minimum is global; the minimiser is unique up to rotation"
    sols = case.sc_starts()
    losses = [_loss(p, s.Z) for s in sols]
    bound = case.sc_relaxation()
    points = [(f"PGD start seed {s.seed}", v) for s, v in zip(sols, losses)]
    best, invalid = _best_bound([bound], points, tol)
    k = int(np.argmin(losses))
    predicted = theory.sc_etf_loss(p.counts[0], K, p.tau, p.radius) if p.balanced and p.dim >= K - 1 else None
    row.minimum = _minimum_dict(f"best of {len(sols)} PGD starts (seed {sols[k].seed})", losses[k], predicted,
                                best, [bound], tol)
    lb = None if best is None else best["lower_bound"]
    starts = []
    for s, v in zip(sols, losses):
        gap = None if lb is None else v - lb
        starts.append({"seed": s.seed, "loss": v, "lower_bound": lb, "gap": gap, "converged": s.converged,
                       "steps": s.steps, "gradient_mapping": s.gradient_mapping,
                       "at_bound": None if gap is None else bool(gap <= _scale(tol, v))})
    stuck = [i for i, st in enumerate(starts) if st["converged"] and st["at_bound"] is False]
    escaped, candidates = [], []
    for n, i in enumerate(stuck):
        st = starts[i]
        if n < ESCAPE_MAX:
            st["escape_loss"] = _escape(case, sols[i])
            if st["escape_loss"] - lb <= _scale(tol, st["escape_loss"]):
                escaped.append(st)
                continue
        candidates.append(st)
    at = [i for i, st in enumerate(starts) if st["at_bound"]]
    running = [st["seed"] for st in starts if not st["converged"] and st["at_bound"] is False]
    row.found = {"solver": f"float64 PGD, {len(sols)} random starts", "starts": len(sols),
                 "converged": sum(st["converged"] for st in starts), "at_bound": len(at),
                 "fraction_at_bound": len(at) / len(sols), "candidates": candidates,
                 "escaped_after_perturbation": [st["seed"] for st in escaped],
                 "not_converged_above_bound": running, "best_seed": sols[k].seed,
                 **_geometry(p, sols[k].Z, "etf" if predicted is not None else "other")}
    row.found["is_predicted"] = None if predicted is None else row.found["is_predicted"]
    # unique up to rotation: the Grams of the starts at the bound agree
    grams = [sols[i].Z @ sols[i].Z.T for i in at]
    diffs = [float(np.abs(G - grams[0]).max()) for G in grams[1:]]
    worst = int(np.argmax(diffs)) + 1 if diffs else None
    agree = not diffs or max(diffs) <= CANDIDATE_TOL
    row.unique = {"claim": True, "statement": "unique up to rotation (the theorem); the Grams of the starts at "
                  f"the certified minimum {'agree' if agree else 'DIFFER'}", "starts_compared": len(grams),
                  "max_gram_difference": max(diffs) if diffs else 0.0, "consistent": agree,
                  "candidate_tol": CANDIDATE_TOL}
    if not agree:
        s = sols[at[worst]]
        row.alternative = {"kind": "PGD start at the certified minimum with another Gram (not verified)",
                           "seed": s.seed, "loss": losses[at[worst]], "gram_difference": diffs[worst - 1],
                           "verified": False}
    tail = (f"; {len(escaped)} stopped above it and went down after a perturbation (saddles or flat shelves)"
            if escaped else "") + (f"; {len(running)} hit the step limit above it, still descending" if running else "")
    failed = bool(candidates and best is not None and row.minimum["certified"]
                  and _landscape_proofs(row, case, sols, candidates, sols[k].Z))
    saddles = not failed and candidates and row.found.get("saddles_proved", 0) == len(candidates)
    if saddles:
        tail += f"; {len(candidates)} start(s) stopped above it at proved saddles (critical points with proved " \
                "negative curvature)"
        candidates = []
    if best is None:
        row.verdict = "inconclusive"
        row.reason = ("the relaxation bound lies above a start's loss: not a valid bound" if invalid else
                      f"no proved lower bound: {row.minimum['why']}")
    elif not row.minimum["certified"]:
        row.verdict = "inconclusive"
        row.reason = (f"PGD did not converge: the best start stopped at the step limit {row.minimum['gap']:.1e} "
                      "above the proved bound (raise --steps)" if not sols[k].converged else
                      f"certificate not tight: the best of {len(sols)} starts is {row.minimum['gap']:.1e} above "
                      "the proved bound")
    elif failed:
        pass  # a proved spurious local minimum: _landscape_proofs set the verdict
    elif candidates:
        c = candidates[0]
        row.verdict = "inconclusive"
        row.reason = (f"{len(candidates)} converged start(s) stopped above the certified minimum (seed {c['seed']}: "
                      f"loss {c['loss']:.10f}, bound {c['lower_bound']:.10f}, gap {c['gap']:.1e}): candidate "
                      "spurious minima, possibly saddles, not certified counterexamples" + _proofs_note(row.found))
    elif 2 * len(at) < len(sols):
        row.verdict = "inconclusive"
        row.reason = (f"only {len(at)} of {len(sols)} starts reached the certified minimum; {len(running)} were still "
                      f"descending after {(1 + POLISH) * case.steps} steps (raise --steps)")
    else:
        row.verdict = "holds"
        row.reason = (f"{len(at)} of {len(sols)} starts reach the certified minimum (gap <= {_scale(tol, losses[k]):.0e}"
                      f", {best['method']} certificate)" + tail
                      + f"; no {'other ' if saddles else ''}start is stuck above it")
        row.reason += (f"; their Grams agree (entries within {max(diffs, default=0.0):.0e})" if agree else
                       f"; note: their Grams differ by up to {max(diffs):.1e}: a flat minimum or a candidate against "
                       "uniqueness up to rotation, not an exact minimiser")
    return row


def _of_common(case: _Case, row: Row):
    """The OF's minimum, the solver's point and the alternatives, shared by the OF and uniqueness rows.
    Returns ``(predicted, points, best, invalid)``."""
    p, tol = case.plus, case.tol
    predicted = theory.predict(p).loss
    sol = case.plus_solution()
    bounds = [case.of_certificate()]
    points = [("the orthogonal frame", case.of_loss()), (f"PGD (seed {sol.seed})", _loss(p, sol.Z))]
    v = case.interaction()
    w = v.witness
    if w is not None and v.witness_Z is not None:
        points.append((f"the interaction witness ({w['kind']})", _loss(p, v.witness_Z)))
    snap = case.snapped()
    if snap is not None:
        points.append(("the snapped PGD point", snap["loss"]))
    best, invalid = _best_bound(bounds, points, tol)
    row.minimum = _minimum_dict("orthogonal frame z_i = rho e_{y_i}", case.of_loss(), predicted, best, bounds, tol)
    row.found = _pgd_found(p, sol, best, "of", tol,
                           f"float64 PGD on the UFM+ problem ({len(sol.start_losses) or 1} start(s))")
    rep = interaction.report(v)
    row.unique = {"claim": v.unique_of, "reason": v.reason, "disconnected_classes": rep["disconnected_classes"],
                  "unmet_class_pairs": rep["unmet_class_pairs"], "class_parts": rep["class_parts"],
                  "hyperedges": rep["hyperedges"], "source": "ufm.interaction.check_problem"}
    if w is not None:
        row.alternative = {**{k: w.get(k) for k in ("kind", "changes", "loss", "of_loss", "loss_gap",
                                                     "gram_change", "verified", "moved_samples")},
                           "source": "ufm.interaction witness"}
    elif snap is not None:
        row.alternative = {**snap, "source": f"PGD (seed {sol.seed}) snapped to basis directions"}
    return predicted, points, best, invalid


def _sc_of(case: _Case) -> Row:
    row = _row("sc-of")
    predicted, points, best, invalid = _of_common(case, row)
    row.prediction = f"orthogonal frame; minimum {predicted:.10f}" + (f" ({case.epoch_note})" if case.epoch_note else "")
    holds = _judge_minimum(row, row.minimum, predicted, points, best, invalid, case.tol)
    if holds and not row.found["is_predicted"] and row.found["at_minimum"]:
        row.reason += ("; PGD stopped at another geometry within the tolerance of the certified minimum (see found, "
                       "alternative)")
    return row


def _of_unique(case: _Case) -> Row:
    row = _row("of-unique")
    predicted, points, best, invalid = _of_common(case, row)
    claim = row.unique["claim"]
    row.prediction = {True: "the OF is the unique minimiser", False: "the OF is not the unique minimiser",
                      None: "undecided by the batch graph"}[claim] + f": {row.unique['reason']}"
    probe = _row("sc-of")  # the presupposition: the OF is a minimiser
    if not _judge_minimum(probe, row.minimum, predicted, points, best, invalid, case.tol):
        row.verdict = "inconclusive"
        row.reason = f"uniqueness of the OF presupposes that it is a minimiser, which is not established here ({probe.verdict}: {probe.reason})"
        return row
    snap = case.snapped()
    snap_ok = snap is not None and snap["verified"]
    w = case.interaction().witness
    found = row.found
    if claim is True:
        if snap_ok:
            row.verdict, row.alternative = "fails", {**snap, "source": f"PGD (seed {found['seed']}) snapped to basis directions"}
            row.counterexample = {"kind": "verified different minimiser", "source": "the snapped PGD point",
                                  "loss": snap["loss"], "predicted_minimum": snap["of_loss"],
                                  "difference": snap["loss_gap"], "gram_change": snap["gram_change"],
                                  "changes": snap["changes"]}
            row.reason = (f"certified counterexample: the graph says unique, but {snap['changes']} has the OF loss "
                          f"(difference {snap['loss_gap']:.1e}) with a different Gram")
        else:
            row.verdict, row.reason = "holds", f"the OF attains the certified minimum and {row.unique['reason']}"
            if found["at_minimum"] and snap is not None:
                row.reason += (f"; note: PGD is within the tolerance of the minimum at another structure "
                               f"({snap['changes']}), which snapped to basis directions is not an exact minimiser "
                               f"(loss {snap['loss_gap']:+.1e} from the OF's): a flat minimum, not a witness")
    elif claim is False:
        if w is not None and w.get("verified"):
            row.verdict = "holds"
            row.reason = (f"the graph does not force the OF, and a verified witness ({w['kind']}) has the OF loss "
                          f"(difference {w['loss_gap']:.1e}) with a different Gram")
        elif snap_ok:
            row.verdict, row.alternative = "holds", {**snap, "source": "PGD snapped to basis directions"}
            row.reason = "the graph does not force the OF and the snapped PGD point is a verified other minimiser"
        else:
            row.verdict = "inconclusive"
            row.reason = "the graph does not force the OF, but its witness was not verified numerically"
    else:
        if snap_ok:
            row.verdict, row.alternative = "holds", {**snap, "source": "PGD snapped to basis directions"}
            row.reason = (f"conditions (a)/(b) fail and the snapped PGD point is a verified other minimiser: "
                          f"{snap['changes']}")
        else:
            row.verdict, row.reason = "inconclusive", row.unique["reason"]
    return row


def _ce_etf(case: _Case) -> Row:
    from .. import solve

    row = _row("ce-etf")
    p, K, tol = case.ce, case.K, case.tol
    pred = theory.predict(p)
    predicted, r_W, rho = pred.loss, pred.r_W, pred.feature_norm
    row.prediction = f"simplex ETF, classifier radius r_W {r_W:.8f}; minimum {predicted:.10f}"
    V = etf_vectors(K, p.dim)
    P = _Point(rho * V[p.label_array], r_W * V)
    p_loss = _loss(p, P.Z, P.W)
    sol = case.cached("ce_sol", lambda: _polish(p, solve(p, steps=case.steps, seed=case.setting.seed,
                                                         dtype="float64"), case.steps))
    s_loss = _loss(p, sol.Z, sol.W)
    bounds = [_bound(p, P, "first-order", tol), _bound(p, sol, "auto", tol)]
    points = [("the predicted CE ETF point", p_loss), (f"PGD (seed {sol.seed})", s_loss)]
    best, invalid = _best_bound(bounds, points, tol)
    row.minimum = _minimum_dict("simplex ETF z_i = rho v_{y_i}, w_c = r_W v_c", p_loss, predicted, best, bounds, tol)
    row.minimum["r_W"] = r_W
    _judge_minimum(row, row.minimum, predicted, points, best, invalid, tol)
    found = _pgd_found(p, sol, best, "etf", tol, "float64 PGD (one start)")
    norms = geometry.classifier_norms(sol.W)
    found["classifier_norms"] = norms.tolist()
    found["r_W"] = r_W
    found["max_norm_error"] = float(np.abs(norms - r_W).max() / max(1.0, r_W))
    found["feature_norms"] = [float(x) for x in (np.linalg.norm(sol.Z, axis=1).min(), np.linalg.norm(sol.Z, axis=1).max())]
    # a distance (GEOMETRY_TOL is on distances); its square is Zhu et al.'s NC3
    found["classifier_mean_distance"] = geometry.classifier_mean_distance(sol.Z, sol.W, p.label_array, K)
    found["is_predicted"] = bool(found["is_predicted"] and found["max_norm_error"] <= GEOMETRY_TOL
                                 and found["classifier_mean_distance"] <= GEOMETRY_TOL)
    row.found = found
    row.unique = {"claim": True, "statement": "unique up to rotation (the theorem)",
                  "found_at_minimum_is_predicted": found["is_predicted"] if found["at_minimum"] else None}
    far = (found["distance_to_etf"] > CANDIDATE_TOL or found["nc1"] > CANDIDATE_TOL
           or found["max_norm_error"] > CANDIDATE_TOL or not found["classifier_mean_distance"] <= CANDIDATE_TOL)
    if found["at_minimum"] and far:
        row.alternative = {"kind": "PGD point at the certified minimum with another geometry (not verified)",
                           "seed": sol.seed, "loss": s_loss, "distance_to_etf": found["distance_to_etf"],
                           "max_norm_error": found["max_norm_error"],
                           "classifier_mean_distance": found["classifier_mean_distance"], "verified": False}
        row.reason += ("; note: PGD is within the tolerance of the minimum at another geometry (max |cos - ETF| "
                       f"{found['distance_to_etf']:.1e}, norm error {found['max_norm_error']:.1e}, classifier-mean "
                       f"distance {found['classifier_mean_distance']:.1e}): a flat minimum or a candidate against "
                       "uniqueness, not an exact minimiser")
    row.unique["consistent"] = not (found["at_minimum"] and far)
    return row


def _bcl_etf(case: _Case) -> Row:
    """The BCL claim (Zhu et al.'s loss, prototypes included): the ETF point, each prototype at its class's vertex,
    against a proved bound; a certified point below it refutes the claim."""
    from .. import solve

    row = _row("bcl-etf")
    p, tol = case.bcl, case.tol
    predicted = theory.predict(p).loss
    row.prediction = f"simplex ETF collapse (claimed); loss there {predicted:.10f}"
    P, C = etf_point(p), p.radius * etf_vectors(p.K, p.dim)  # samples and prototypes at the class vertices
    p_loss = _loss(p, P, C=C)
    sol = _polish(p, solve(p, steps=case.steps, seed=case.setting.seed, dtype="float64"), case.steps)
    bounds = [_bound(p, _Point(P, C=C), "first-order", tol), _bound(p, sol, "auto", tol)]
    points = [("the predicted ETF point", p_loss), (f"PGD seed {sol.seed}", _loss(p, sol.Z, C=sol.C))]
    best, invalid = _best_bound(bounds, points, tol)
    row.minimum = _minimum_dict("simplex-ETF collapse z_i = rho v_{y_i}, prototypes c_k = rho v_k", p_loss,
                                predicted, best, bounds, tol)
    _judge_minimum(row, row.minimum, predicted, points, best, invalid, tol)  # "fails" becomes "refuted" (_check)
    row.found = _pgd_found(p, sol, best, "etf", tol, "float64 PGD")
    return row


def verify_setting(setting: Setting, *, steps: int = DEFAULT_STEPS, starts: int = DEFAULT_STARTS,
                   tol: float = TOL) -> list[Row]:
    """Check every theorem of ``THEOREMS`` on ``setting`` (module doc): one row per theorem, applicable or not.
    Raises ``ValueError`` (naming the field) for a bad setting."""
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not isinstance(starts, (int, np.integer)) or starts < 1:
        raise ValueError(f"starts must be an integer >= 1, got {starts!r}")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    setting = setting.resolved()
    case = _Case(setting, int(steps), int(starts), float(tol))
    return [_check(case, t) for t in THEOREMS]


def _check(case: _Case, t: Theorem) -> Row:
    """Row ``t`` in ``case``: not applicable (the hypothesis missed), or ``t.check``'s row labelled with ``t``
    (a conjecture shares its theorem's check and computation; a claim's counterexample refutes it)."""
    start = time.perf_counter()
    why = t.applies(case)  # type: ignore[misc]  # every record in THEOREMS has applies and check
    if why:
        row = _not_applicable(_row(t.key), why)
    else:
        try:
            row = case.cached(("row", getattr(t.check, "target", t.check)), lambda: t.check(case))  # type: ignore[misc]
        except RuntimeError as e:  # a solver that failed (a non-finite loss, ...) decides nothing
            row = _row(t.key)
            row.verdict, row.reason = "inconclusive", f"a solver failed: {type(e).__name__}: {e}"
        row = replace(row, key=t.key, theorem=t.title, hypotheses=t.hypotheses, kind=t.kind)
        if t.kind == "claim" and row.verdict == "fails":
            row.verdict = "refuted"
            row.reason = row.reason.replace("certified counterexample", "claim refuted by a certified counterexample")
        elif t.kind == "conjecture" and row.verdict == "fails":
            row.reason = row.reason.replace("certified counterexample", "conjecture fails: certified counterexample")
    row.setting = case.setting.to_dict()
    row.seconds = time.perf_counter() - start
    return row


def verify(counts, *, tau=0.5, dim=None, radius=1.0, constraint="sphere", weight_decay=None, batching="full",
           batches=None, steps=DEFAULT_STEPS, seed=0, starts=DEFAULT_STARTS, tol=TOL) -> list[Row]:
    """:func:`verify_setting` for the setting of these arguments (``dim`` None: ``K + 2``; ``seed``: the random
    starts and the batching's ``batch_seed``)."""
    return verify_setting(Setting(tuple(counts), tau, dim, radius, constraint, weight_decay,
                                  "explicit" if batches is not None else batching, batches, seed),
                          steps=steps, starts=starts, tol=tol)


# -- the built-in suite --------------------------------------------------------------------------------------------
SUITE = (
    # balanced, full batch, d > K: the SC ETF, the landscape, the OF (unique) and CE on the sphere
    Setting((4, 4, 4), tau=0.5, dim=5),
    # imbalanced with single-sample classes, d > K: the landscape; the OF is a minimiser but not unique
    Setting((9, 9, 1, 1), tau=0.5, dim=6),
    # mini-batches (binding): the OF bound batch by batch, and the batch graph
    Setting((3, 3, 2), tau=0.5, dim=4, batching="binding:2"),
    # balanced on the ball: CE as Graf et al. state it, the SC ETF on the ball
    Setting((3, 3, 3, 3), tau=1.0, dim=4, constraint="ball", weight_decay=1e-2),
)


def run_suite(steps: int = DEFAULT_STEPS, starts: int = DEFAULT_STARTS, tol: float = TOL, settings=SUITE) -> list[Row]:
    """Every row of every setting of ``SUITE`` (each theorem applies in at least one of them)."""
    return [r for s in settings for r in verify_setting(s, steps=steps, starts=starts, tol=tol)]


# -- the audit -----------------------------------------------------------------------------------------------------
BATCHINGS = ("full", "fixed", "full", "subsets", "binding", "explicit")  # the audit's cycle (full twice: the
# landscape and the ETF theorems are full-batch)


def random_setting(rng: np.random.Generator, kind: str | None = None, balanced: bool | None = None) -> Setting:
    """A random setting for the audit: K in 2..8, N <= ~40, counts with single-sample classes (unless
    ``balanced``), tau in [0.05, 2] (log-uniform), d in K..K+2, sphere or ball, CE weight decay in
    [1e-3, 5e-2] (log-uniform), and the batching ``kind``: ``full``, ``fixed`` (``fixed:b``), ``subsets``
    (``subsets:b``), ``binding`` (``binding:b``) or ``explicit`` (random batches, which may leave samples out).
    ``kind`` / ``balanced`` None: drawn too."""
    if kind is None:
        kind = str(rng.choice(["full", "fixed", "subsets", "binding", "explicit"]))
    if balanced is None:
        balanced = bool(rng.random() < 0.35)
    K = int(rng.integers(2, 9))
    top = max(2, 40 // K)
    if balanced:
        counts = [int(rng.integers(2, top + 1))] * K
    else:
        counts = [1 if rng.random() < 0.25 else int(rng.integers(1, top + 1)) for _ in range(K)]
        if max(counts) < 2:
            counts[0] = 2
        if len(set(counts)) == 1:
            counts[-1] = 1 if counts[-1] > 1 else 2
    N = sum(counts)
    tau = float(np.exp(rng.uniform(np.log(0.05), np.log(2.0))))
    dim = K + int(rng.integers(0, 3))
    constraint = "ball" if rng.random() < 0.25 else "sphere"
    wd = float(np.exp(rng.uniform(np.log(1e-3), np.log(5e-2))))
    seed = int(rng.integers(0, 10_000))
    batches = None
    if kind == "full":
        batching = "full"
    elif kind == "subsets":
        batching = f"subsets:{int(rng.integers(2, min(N, 5) + 1))}"
    elif kind in ("fixed", "binding"):
        batching = f"{kind}:{int(rng.integers(2, max(2, N // 2) + 1))}"
    elif kind == "explicit":
        batching = "explicit"
        batches = tuple(tuple(sorted(rng.choice(N, int(rng.integers(2, min(N, 12) + 1)), replace=False).tolist()))
                        for _ in range(int(rng.integers(2, 7))))
    else:
        raise ValueError(f"kind must be one of full, fixed, subsets, binding, explicit; got {kind!r}")
    return Setting(tuple(counts), tau, dim, 1.0, constraint, wd, batching, batches, seed)


# The audit's profiles: each draws a setting inside the hypotheses of the rows it aims at, near their edges. The
# cycle leans to settings inside every theorem at once (balanced, full batch, sphere, d > K) with the edges that keep
# them inside (small tau, n = 2, K = 2, d = K + 1, the smallest d of the landscape); the other edges (d = K,
# d = K-1, singleton classes, mini-batches, the ball) leave some rows out by construction and come once per cycle.
PROFILES = ("inside", "inside-small-tau", "inside-n2", "inside-K2", "d=K", "inside-large-tau", "singletons",
            "inside", "d=K-1", "batches", "ball", "inside-small-tau")


def _log_uniform(rng, lo, hi) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def audit_setting(rng: np.random.Generator, profile: str) -> Setting:
    """A setting for the audit, drawn inside the hypotheses of the rows ``profile`` aims at (``PROFILES``):

    * ``inside``: balanced counts (n in 2..6, K in 2..5), full batch, sphere, d in {K+1, K+2}, tau in [0.05, 2],
      CE weight decay in [1e-3, 5e-2] (log-uniform): every row applies;
    * ``inside-small-tau``: the same with tau in [0.02, 0.08] (the flat regime of the losses);
      ``inside-large-tau``: tau in [2, 10] (the weak-contrast regime);
    * ``inside-n2``: n = 2 (the fewest samples with a positive); ``inside-K2``: K = 2;
    * ``d=K``: d = K (the OF fits, the landscape's d > K does not); ``d=K-1``: d = K-1 (the ETF's edge);
    * ``singletons``: imbalanced counts with singleton classes and a class of 2+ (the OF, the landscape
      conjecture, BCL's claim), d = K+1;
    * ``batches``: balanced or imbalanced counts under ``binding:b``, ``fixed:b`` or ``subsets:b`` (the OF's batch
      statements), d = K;
    * ``ball``: balanced, full batch, the ball (the conjectures' widening and CE as Graf et al. state it), d = K+1.
    """
    K = 2 if profile == "inside-K2" else int(rng.integers(2, 6))
    n = 2 if profile == "inside-n2" else int(rng.integers(2, 7))
    counts = [n] * K
    tau = (_log_uniform(rng, 0.02, 0.08) if profile == "inside-small-tau" else
           _log_uniform(rng, 2.0, 10.0) if profile == "inside-large-tau" else _log_uniform(rng, 0.05, 2.0))
    dim = K + 1 + int(rng.integers(0, 2))
    constraint, batching = "sphere", "full"
    if profile == "d=K":
        dim = K
    elif profile == "d=K-1":
        K = max(K, 3)
        counts, dim = [n] * K, K - 1
    elif profile == "singletons":
        K = max(K, 3)
        ones = int(rng.integers(1, K))
        counts = [int(rng.integers(2, 9)) for _ in range(K - ones)] + [1] * ones
        dim = K + 1
    elif profile == "batches":
        if rng.random() < 0.5:
            counts = [int(rng.integers(1, 7)) for _ in range(K)]
            counts[0] = max(counts[0], 2)
        N = sum(counts)
        kind = str(rng.choice(["binding", "fixed", "subsets"]))
        b = int(rng.integers(2, max(2, min(N, 6)) + 1))
        batching, dim = f"{kind}:{b}", K
    elif profile == "ball":
        constraint = "ball"
    elif not profile.startswith("inside"):
        raise ValueError(f"profile must be one of {', '.join(dict.fromkeys(PROFILES))}; got {profile!r}")
    wd = _log_uniform(rng, 1e-3, 5e-2)
    return Setting(tuple(counts), tau, dim, 1.0, constraint, wd, batching, None, int(rng.integers(0, 10_000)))


def applied_fraction(rows) -> float:
    """The share of rows (``Row`` s or their dicts) whose verdict is not ``"not applicable"``."""
    verdicts = [r["verdict"] if isinstance(r, dict) else r.verdict for r in rows]
    return sum(v != "not applicable" for v in verdicts) / max(1, len(verdicts))


def audit(n: int, seed: int = 0, *, steps: int = DEFAULT_STEPS, starts: int = DEFAULT_STARTS, tol: float = TOL,
          progress: bool = True) -> dict:
    """Check every row of ``THEOREMS`` on ``n`` random settings drawn inside the theorems' hypotheses and near
    their edges (:func:`audit_setting`, the profiles of ``PROFILES`` in turn, the numbers drawn from ``seed``).

    Returns ``settings`` (n), ``rows`` (all rows, each with its setting), ``applied`` (the share of rows that
    apply, :func:`applied_fraction`), ``counterexamples`` (each with the setting, the theorem, the certificate
    numbers and the ``command`` that reproduces it; theorems only), ``refuted_claims`` (the same for refuted
    conjectures and claims, e.g. BCL's), ``inconclusive`` (the same for inconclusive rows), ``within_tolerance``
    (rows that hold only within the tolerance, with their ``margin``) and ``verdicts`` (the count of each
    verdict). A setting whose check raises gives one inconclusive row with the error.
    """
    from ufm.progress import Progress

    rng = np.random.default_rng(seed)
    settings = [audit_setting(rng, PROFILES[i % len(PROFILES)]).resolved() for i in range(n)]
    bar = Progress(n, "ufm verify --audit", enabled=progress)
    rows, cex, inc, refuted, near = [], [], [], [], []
    for s in settings:
        try:
            got = verify_setting(s, steps=steps, starts=starts, tol=tol)
        except Exception as e:  # an audit reports a crash in one setting and goes on
            got = [Row("error", "the check of this setting raised", "", verdict="inconclusive",
                       reason=f"{type(e).__name__}: {e}", setting=s.to_dict())]
        cmd = s.command(steps, starts, tol)
        for r in got:
            if r.verdict in ("fails", "refuted"):  # a theorem's or a conjecture's counterexample, or a claim's
                (cex if r.verdict == "fails" else refuted).append(
                    {"setting": s.to_dict(), "theorem": r.key, "counterexample": r.counterexample,
                     "minimum": r.minimum, "reason": r.reason, "command": cmd})
            elif r.verdict == "inconclusive":
                inc.append({"setting": s.to_dict(), "theorem": r.key, "reason": r.reason, "command": cmd})
            if r.within_tolerance:
                near.append({"setting": s.to_dict(), "theorem": r.key, "margin": r.margin, "reason": r.reason,
                             "command": cmd})
        rows.extend(got)
        tally = {v: sum(r.verdict == v for r in rows) for v in ("fails", "inconclusive")}
        bar.update(1, f"fails {tally['fails']}, inconclusive {tally['inconclusive']}")
    return {"settings": n, "seed": seed, "rows": [r.to_dict() for r in rows], "applied": applied_fraction(rows),
            "counterexamples": cex, "refuted_claims": refuted, "inconclusive": inc, "within_tolerance": near,
            "verdicts": {v: sum(r.verdict == v for r in rows) for v in VERDICTS}}


def exit_code(verdicts: dict) -> int:
    """The exit code of ``ufm verify`` for a count of verdicts: 1 when a theorem or a conjecture fails (a certified
    counterexample), else 3 when something is inconclusive, else 0 (a refuted claim from the literature still 0)."""
    return 1 if verdicts["fails"] else 3 if verdicts["inconclusive"] else 0


def _tally(rows) -> dict:
    return {v: sum((r["verdict"] if isinstance(r, dict) else r.verdict) == v for r in rows) for v in VERDICTS}


_audit = audit


def verify_report(setting: Setting | None = None, *, steps: int = DEFAULT_STEPS, starts: int = DEFAULT_STARTS,
                  tol: float = TOL, audit: int | None = None, seed: int = 0, progress: bool = False,
                  out: str | None = None) -> dict:
    """Check every row of ``THEOREMS`` that applies to ``setting``, to each setting of the built-in ``SUITE``
    (``setting`` None), or to ``audit`` random settings (``ufm verify``, ``--counts`` / no flag / ``--audit``).

    Args:
      setting: the setting to check (:class:`Setting`; ``dim`` None becomes ``K + 2``), or None.
      steps: most projected-gradient steps per run, >= 1.
      starts: random starts of the landscape check, >= 1.
      tol: relative loss tolerance, finite and >= 0.
      audit: check this many random settings instead (:func:`audit`); ``setting`` must then be None.
      seed: with ``audit``: the draw (a setting carries its own seed).
      progress: with ``audit``: a progress bar on a terminal.
      out: a folder to write ``verify.json`` into; None: write nothing.
    Returns:
      the ``verify.json`` dict: ``setting`` (its dict, or ``{"suite": [...]}``), ``rows`` (``Row.to_dict``),
      ``holds``, ``verdicts`` (the count of each verdict), ``exit`` (:func:`exit_code`) and ``versions``; with
      ``audit``, :func:`audit`'s dict with ``holds``, ``exit`` and ``versions``.
    Raises:
      ValueError: a bad option or setting, naming it.
    """
    from ufm.records import versions

    for name, value in (("steps", steps), ("starts", starts)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol: must be a finite number >= 0, got {tol!r}")
    if setting is not None and not isinstance(setting, Setting):
        raise TypeError(f"setting: must be a Setting or None, got {type(setting).__name__}")
    if audit is not None:
        if isinstance(audit, bool) or not isinstance(audit, int) or audit < 1:
            raise ValueError(f"audit: must be an integer >= 1, got {audit!r}")
        if setting is not None:
            raise ValueError("audit: draws its own settings: give no setting")
        rep = _audit(audit, seed, steps=steps, starts=starts, tol=tol, progress=progress)
        tally = rep["verdicts"]
        result = {**rep, "holds": tally["fails"] == 0 and tally["inconclusive"] == 0, "exit": exit_code(tally),
                  "versions": versions()}
    else:
        if setting is None:
            rows = run_suite(steps=steps, starts=starts, tol=tol)
            described: dict = {"suite": [s.resolved().to_dict() for s in SUITE]}
        else:
            resolved = setting.resolved()
            rows = verify_setting(resolved, steps=steps, starts=starts, tol=tol)
            described = resolved.to_dict()
        tally = _tally(rows)
        result = {"setting": described, "rows": [r.to_dict() for r in rows],
                  "holds": tally["fails"] == 0 and tally["inconclusive"] == 0, "verdicts": tally,
                  "exit": exit_code(tally), "versions": versions()}
    if out is not None:
        import os

        from ufm import runs
        from ufm.records import write_json

        write_json(os.path.join(runs.prepare(out, ("verify.json",), flag="out"), "verify.json"), result)
    return result
