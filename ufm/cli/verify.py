"""``ufm verify``: every theorem of docs/theory.md §4 that applies to a setting, checked against its statement.

Without ``--counts`` it runs a small built-in suite in which every theorem applies at least once; with
``--counts`` it checks that one setting; with ``--audit N`` it checks N random settings. The verdicts and how
they are reached are documented in ``solvers.workflows.verify``. Exit codes: 0 every applicable theorem and conjecture
holds (a refuted claim from the literature still exits 0), 1 a theorem or a conjecture fails (a certified
counterexample), 3 nothing fails but something is inconclusive, 2 bad input.
"""
from __future__ import annotations

import argparse

from ufm.defaults import DEFAULT_STEPS

from .common import UsageError, dumps, ensure_dir, flag_error, int_list, seed_int

HELP = "check every theorem that applies to a setting against its statement (holds / fails / inconclusive)"

WORDS = {"holds": "HOLDS", "fails": "FAILS", "inconclusive": "INCONCLUSIVE", "not applicable": "NOT APPLICABLE",
         "refuted": "REFUTED"}


def _epilog() -> str:
    from solvers.workflows.verify import THEOREMS

    lines = ["rows (docs/theory.md §4): theorems as their papers state them, conjectures (ufm's widenings) and claims:"]
    for t in THEOREMS:
        lines += [f"  {t.key} [{t.kind}]: {t.title}", f"      hypotheses: {t.hypotheses}",
                  f"      statement:  {t.statement}"]
    lines += [
        "",
        "verdicts: HOLDS when the statement is established (the predicted point's float64 loss is within",
        "  tol*max(1,|loss|) of a proved lower bound and of the closed form; another minimiser the solver finds is",
        "  reported, not a failure); FAILS only on a certified counterexample (a point below the predicted minimum,",
        "  a proved bound above it, or a verified different minimiser against a uniqueness claim); INCONCLUSIVE",
        "  otherwise, with the reason; NOT APPLICABLE names the hypothesis the setting misses. A conjecture (ufm's",
        "  widening of a theorem) FAILS like a theorem; a claim from the literature with a certified",
        "  counterexample is REFUTED (a finding about that paper). A verdict that holds only",
        "  within the tolerance (a point, or the proved bound, below the prediction) says so, with its margin.",
        "",
        "exit codes: 0 every applicable theorem and conjecture holds (a refuted claim still exits 0); 1 a",
        "  theorem or a conjecture fails; 3 nothing fails but something is inconclusive; 2 bad input. The last",
        "  line counts theorems, conjectures and claims apart: e.g. 'Result: all theorems and conjectures hold;",
        "  1 claim refuted (exit 0)'.",
        "",
        "examples:",
        "  ufm verify                                   # the built-in suite (every theorem applies once or more)",
        "  ufm verify --counts 9,9,1,1 --tau 0.5 --dim 4",
        "  ufm verify --counts 3,3,2 --batches '0,1,2,6;3,4,5,7;6,7,0;6,7,3;0,3,6,7'",
        "  ufm verify --audit 12 --seed 0 --json        # 12 random settings; counterexamples come with a command",
    ]
    return "\n".join(lines)


def add_parser(sub):
    p = sub.add_parser("verify", help=HELP, description=HELP + ".", epilog=_epilog(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--counts", type=int_list, default=None,
                   help="samples per class; without it, the built-in suite")
    p.add_argument("--tau", type=float, default=0.5, help="SC temperature (default 0.5)")
    p.add_argument("--dim", type=int, default=None, help="d (default K + 2: room for every theorem)")
    p.add_argument("--radius", type=float, default=1.0, help="rho, the sphere/ball radius (default 1)")
    p.add_argument("--constraint", choices=["sphere", "ball"], default="sphere", help="feature set (default sphere)")
    p.add_argument("--weight-decay", type=float, default=None, help="CE lambda_W (default 5e-3)")
    p.add_argument("--batching", default="full", metavar="SCHEME",
                   help="full | fixed:b | subsets:b | binding:b | shuffled:b (epoch schemes: epoch 0's batches)")
    p.add_argument("--batches", default=None, help="explicit batches '0,1,3;2,4,5' or a file")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"most PGD steps per run (default {DEFAULT_STEPS})")
    p.add_argument("--starts", type=int, default=16, help="random starts of the landscape check (default 16)")
    p.add_argument("--tol", type=float, default=1e-6, help="relative loss tolerance (default 1e-6)")
    p.add_argument("--seed", type=seed_int, default=0, help="random starts and batch seed; with --audit, the draw")
    p.add_argument("--audit", type=int, default=None, metavar="N", help="check N random settings instead")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", metavar="DIR", default=None, help="write verify.json here")
    return p


def _num(v, fmt):
    return "-" if v is None else format(v, fmt)


def _minimum_line(m) -> str:
    if m is None:
        return "-"
    cf = "" if m["closed_form"] is None else f", closed form {m['closed_form']:.10f}"
    if m["lower_bound"] is None:
        return f"{m['point']}: loss {m['loss']:.10f}{cf}; no proved bound ({m['why']}): NOT CERTIFIED"
    state = "CERTIFIED" if m["certified"] else "NOT CERTIFIED"
    return (f"{m['point']}: loss {m['loss']:.10f}{cf}; proved bound {m['lower_bound']:.10f} ({m['method']}); "
            f"gap {m['gap']:.1e}: {state}")


def _found_line(f) -> str:
    if f is None:
        return "-"
    geo = (f"{f['geometry']} (max |cos - ETF| {f['distance_to_etf']:.1e}, max |cos - OF| {f['distance_to_of']:.1e}, "
           f"NC1 {f['nc1']:.1e})")
    if "starts" in f and "fraction_at_bound" in f:
        text = (f"{f['solver']}: {f['at_bound']}/{f['starts']} at the certified minimum, {f['converged']} converged, "
                f"{len(f['candidates'])} candidate(s) above it; best: {geo}")
    else:
        text = f"{f['solver']}, seed {f['seed']}: loss {f['loss']:.10f}, gap {_num(f['gap'], '.1e')}; {geo}"
        if "classifier_mean_distance" in f:
            text += f"; |w_c| - r_W {f['max_norm_error']:.1e}, classifier-mean distance {f['classifier_mean_distance']:.1e}"
    if f.get("is_predicted") is not None:
        text += "; the predicted geometry" if f["is_predicted"] else "; NOT the predicted geometry"
    return text


def _unique_line(u) -> str:
    if u is None:
        return "-"
    claim = {True: "yes", False: "no", None: "undecided"}[u["claim"]]
    if "unmet_class_pairs" in u:  # the batch graph of the orthogonal frame
        a = (f"fails for classes {', '.join(map(str, u['disconnected_classes']))}" if u["disconnected_classes"]
             else "holds")
        b = (f"fails for class pairs {', '.join(f'{i}-{j}' for i, j in u['unmet_class_pairs'])}"
             if u["unmet_class_pairs"] else "holds")
        detail = f"batch graph: condition (a) {a}, (b) {b}" + ("" if u["claim"] is False else f"; {u['reason']}")
    else:
        detail = u.get("statement") or ""
    return f"{claim}: {detail}"


def _alternative_line(a) -> str:
    if a is None:
        return "-"
    what = a.get("changes") or a.get("kind")
    loss = f"loss {a['loss']:.10f}" if a.get("loss") is not None else ""
    ref = f" vs OF loss {a['of_loss']:.10f}" if a.get("of_loss") is not None else ""
    state = {True: "VERIFIED", False: "not verified", None: "not evaluated"}[a.get("verified")]
    return f"{what}; {loss}{ref}: {state}"


def table(rows, show_setting=False) -> str:
    """The human table: one block per row, verdict words in capitals (``WORDS``)."""
    lines, last = [], None
    for r in rows:
        if show_setting and r.setting != last:
            from solvers.workflows.verify import Setting

            s = dict(r.setting)
            s["counts"] = tuple(s["counts"])
            s["batches"] = None if s["batches"] is None else tuple(tuple(b) for b in s["batches"])
            lines.append(f"\n== {Setting(**s).describe()} ==")
            last = r.setting
        lines.append(r.theorem)
        if r.verdict == "not applicable":
            lines.append(f"    verdict      NOT APPLICABLE: {r.reason}")
            continue
        lines.append(f"    prediction   {r.prediction}")
        lines.append(f"    minimum      {_minimum_line(r.minimum)}")
        lines.append(f"    found        {_found_line(r.found)}")
        lines.append(f"    unique       {_unique_line(r.unique)}")
        lines.append(f"    alternative  {_alternative_line(r.alternative)}")
        word = WORDS[r.verdict] + (f" (within tolerance, margin {r.margin:.1e})" if r.within_tolerance else "")
        kind = "" if r.kind == "theorem" else f" [{r.kind}]"
        lines.append(f"    verdict      {word}{kind}: {r.reason}   ({r.seconds:.1f} s)")
    return "\n".join(lines)


def _tally(rows) -> dict:
    return {v: sum(r["verdict"] == v if isinstance(r, dict) else r.verdict == v for r in rows) for v in WORDS}


def exit_code(tally) -> int:
    """``solvers.workflows.verify.exit_code`` (imported when called)."""
    from solvers.workflows.verify import exit_code as code

    return code(tally)


_COUNTED = {"holds": "HOLD", "fails": "FAIL", "inconclusive": "INCONCLUSIVE", "refuted": "REFUTED"}


def _kind_tallies(rows) -> dict:
    """The verdicts of the rows of each kind (``"theorem"``, ``"conjecture"``, ``"claim"``), counted as ``_tally``."""
    from solvers.workflows.verify import THEOREMS

    kind = {t.key: t.kind for t in THEOREMS}

    def key(r):
        return r["key"] if isinstance(r, dict) else r.key

    return {k: _tally([r for r in rows if kind.get(key(r), "theorem") == k]) for k in ("theorem", "conjecture", "claim")}


def last_line(tally, kinds=None) -> str:
    """The summary: theorems, conjectures and claims apart, so a refuted claim is never read as a failing theorem
    nor hidden under "all hold". ``kinds``: the tally of each kind's rows (``_kind_tallies``; default: every row a
    theorem)."""
    kinds = kinds or {"theorem": tally}
    applied = ("holds", "fails", "inconclusive", "refuted")
    n = sum(tally[v] for v in applied)
    th = kinds.get("theorem", {v: 0 for v in WORDS})
    parts = [f"theorems {th['holds']} HOLD, {th['fails']} FAIL, {th['inconclusive']} INCONCLUSIVE"]
    for name, words in (("conjecture", ("holds", "fails", "inconclusive")), ("claim", ("holds", "refuted", "inconclusive"))):
        t = kinds.get(name)
        if t and sum(t[v] for v in applied):
            parts.append(f"{name}s " + ", ".join(f"{t[v]} {_COUNTED[v]}" for v in words))
    counts = f"{n} checks applied: {'; '.join(parts)} ({tally['not applicable']} not applicable)"
    k = tally["refuted"]
    refuted = f"; {k} claim{'s' if k != 1 else ''} refuted" if k else ""
    code = exit_code(tally)
    if code == 1:
        which = ("a theorem" if th["fails"] else "a conjecture (ufm's widening of a theorem)")
        return f"{counts}. Result: FAILS (exit 1): {which} fails with a certified counterexample{refuted}."
    if code == 3:
        return f"{counts}. Result: INCONCLUSIVE (exit 3): nothing fails, but some checks are inconclusive{refuted}."
    conj = kinds.get("conjecture")
    held = "all theorems and conjectures hold" if conj and sum(conj[v] for v in applied) else "all theorems hold"
    if not sum(th[v] for v in applied) and not (conj and sum(conj[v] for v in applied)):
        return f"{counts}. Result: no theorem applies{refuted} (exit 0)."
    return f"{counts}. Result: {held}{refuted} (exit 0)."


FLAGS = {"counts": "--counts", "tau": "--tau", "dim": "--dim", "radius": "--radius", "constraint": "--constraint",
         "weight_decay": "--weight-decay", "batches": "--batches", "seed": "--seed", "steps": "--steps",
         "starts": "--starts", "tol": "--tol", "audit": "--audit"}


def _report(args, setting=None):
    """``solvers.workflows.verify.verify_report`` with the flags; a ``UsageError`` naming the flag for bad input.
    The folder of ``--out`` is checked before the run."""
    from solvers.workflows.verify import verify_report

    if args.out:
        ensure_dir(args.out, ("verify.json",))
    try:
        return verify_report(setting, steps=args.steps, starts=args.starts, tol=args.tol, audit=args.audit,
                             seed=args.seed, progress=not args.json, out=args.out)
    except (ValueError, TypeError) as e:
        raise flag_error(e, FLAGS) from None


def _run_audit(args) -> int:
    given = [f for f, v in (("--counts", args.counts), ("--batches", args.batches), ("--dim", args.dim),
                            ("--weight-decay", args.weight_decay)) if v is not None]
    given += [f for f, v, default in (("--batching", args.batching, "full"), ("--tau", args.tau, 0.5),
                                      ("--radius", args.radius, 1.0), ("--constraint", args.constraint, "sphere"))
              if v != default]
    if given:
        raise UsageError(f"--audit draws its own settings: drop {', '.join(given)}")
    if args.audit < 1:
        raise UsageError(f"--audit must be >= 1, got {args.audit}")
    out = _report(args)
    tally = out["verdicts"]
    if args.json:
        print(dumps(out))
    else:
        print(f"ufm verify --audit {args.audit} --seed {args.seed}: {args.audit} random settings\n")
        for r in out["rows"]:
            if r["verdict"] != "not applicable":
                s = r["setting"]
                word = WORDS[r["verdict"]] + ("~" if r.get("within_tolerance") else "")
                print(f"  {word:13} {r['key']:13} counts {','.join(map(str, s['counts']))}, "
                      f"tau {s['tau']:.3g}, dim {s['dim']}, {s['constraint']}, "
                      f"{'explicit' if s['batches'] else s['batching']}: {r['reason'][:110]}")
        for c in out["counterexamples"]:
            print(f"\ncounterexample ({c['theorem']}): {c['reason']}\n  reproduce: {c['command']}")
        for c in out.get("refuted_claims", []):
            print(f"\nclaim refuted ({c['theorem']}): {c['reason']}\n  reproduce: {c['command']}")
        for c in out.get("within_tolerance", []):
            print(f"\nholds within the tolerance only ({c['theorem']}, margin {c['margin']:.1e}): "
                  f"{c['command']}")
        for c in out["inconclusive"]:
            print(f"\ninconclusive ({c['theorem']}): {c['reason']}\n  reproduce: {c['command']}")
        print(f"\n{100 * out['applied']:.0f}% of the rows apply (the settings are drawn inside the hypotheses)")
        print(last_line(tally, _kind_tallies(out["rows"])))
    return exit_code(tally)


def run(args) -> int:
    from solvers.workflows.verify import SUITE, Row, Setting

    from ufm.batching import batches_from_text

    if args.audit is not None:
        return _run_audit(args)
    setting = None
    if args.counts is None:
        given = [f for f, v in (("--batches", args.batches), ("--dim", args.dim)) if v is not None]
        if given or args.batching != "full":
            raise UsageError(f"{', '.join(given or ['--batching'])} needs --counts (without it the built-in "
                             "suite runs)")
        head = f"the built-in suite ({len(SUITE)} settings)"
    else:
        batches, batching = None, args.batching
        try:
            if args.batches is not None:
                if args.batching != "full":
                    raise ValueError("batches: give --batches or --batching, not both")
                batches, batching = batches_from_text(args.batches), "explicit"
            setting = Setting(tuple(args.counts), args.tau, args.dim, args.radius, args.constraint,
                              args.weight_decay, batching, batches, args.seed).resolved()
        except (ValueError, TypeError) as e:
            raise flag_error(e, FLAGS) from None
        head = setting.describe()
    out = _report(args, setting)
    rows = [Row(**r) for r in out["rows"]]
    tally = out["verdicts"]
    if args.json:
        print(dumps(out))
    else:
        print(f"ufm verify: {head} (float64 PGD, first-order and convex-relaxation certificates, tol {args.tol:g})")
        print(table(rows, show_setting=args.counts is None))
        print("\n" + last_line(tally, _kind_tallies(rows)))
    return exit_code(tally)
