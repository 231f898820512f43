"""``ufm measure``: the geometry of a network's embeddings beside the UFM with the same counts, loss, tau, ReLU and
batching (``solvers.workflows.measure``)."""
from __future__ import annotations


from .common import UsageError, dumps, fmt_matrix, loss_choices, seed_int

HELP = "measure a network's embeddings (NC1, Delta_GM, NC3, NC4) and their distance to the UFM's geometry"

FORMATS = ".npy, .npz, .csv, .tsv, .pt (torch), .safetensors"


OUTPUTS = ("result.json", "cosines.png", "per_class.csv")


def add_parser(sub):
    p = sub.add_parser("measure", help=HELP, description=HELP + f". Files: {FORMATS}; nothing is unpickled. "
                       "The UFM is solved in float64 and certified.")
    g = p.add_argument_group("inputs")
    g.add_argument("--embeddings", required=True, metavar="FILE", help="embeddings Z (N, d)")
    g.add_argument("--labels", required=True, metavar="FILE", help="labels (N,), integers 0..K-1, every class used")
    g.add_argument("--classifier", metavar="FILE", default=None, help="classifier W (K, d): adds NC3 and NC4")
    g.add_argument("--key", metavar="NAME", default=None,
                   help="the embeddings' array in an .npz / .pt dict / .safetensors file holding several (default: "
                        "the only one, else the one named 'embeddings')")
    g.add_argument("--labels-key", metavar="NAME", default=None,
                   help="likewise for --labels (default: the only array, else 'labels')")
    g.add_argument("--classifier-key", metavar="NAME", default=None,
                   help="likewise for --classifier (default: the only array, else 'classifier')")
    g.add_argument("--header", action="store_true",
                   help="CSV / TSV: the first line is a header (default: only when none of its cells is a number)")
    u = p.add_argument_group("the UFM to compare with")
    u.add_argument("--loss", choices=loss_choices(), default="sc",
                   help="the loss the network was trained with (default sc; sc and bcl normalise the rows)")
    u.add_argument("--tau", type=float, default=0.1, help="temperature (default 0.1)")
    u.add_argument("--nonneg", "--relu", dest="nonneg", action="store_true",
                   help="the embeddings are non-negative: they pass a ReLU (UFM+); --relu is its older name")
    u.add_argument("--weight-decay", type=float, default=5e-3, help="CE: weight and feature decay (default 5e-3)")
    b = u.add_mutually_exclusive_group()
    b.add_argument("--batching", default="full", metavar="SCHEME",
                   help="full | fixed:b | shuffled:b | binding:b | subsets:b (default full)")
    b.add_argument("--batches", default=None, metavar="FILE",
                   help="explicit batches: indices of the embeddings' rows (.json list of lists, or one per line)")
    u.add_argument("--seed", type=seed_int, default=0, help="the UFM's random start and batch seed (default 0)")
    u.add_argument("--no-ufm", action="store_true", help="measure the network only (no solve, no certificate)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="write result.json, cosines.png (network beside UFM) and per_class.csv here")
    return p


def summary(res) -> str:
    g, u = res["geometry"], res["ufm"]
    lines = [f"N={res['N']}, d={res['d']}, K={res['K']}, counts {','.join(map(str, res['counts']))}; "
             f"loss {res['loss']}, tau={res['tau']:g}{', ReLU' if res.get('nonneg', res.get('relu')) else ''}; "
             f"rows normalised: {g['normalization']}",
             "network: cosines between class means:", fmt_matrix(g["mean_cosines"]),
             f"  delta_gm {g['delta_gm']:.4f} (0 at OF)   etf_distance {g['etf_distance']:.4f}   nc1 {g['nc1']:.4e}"]
    if g["nc3"] is not None:
        lines.append(f"  nc3 {g['nc3']:.4e}   nc4 {g['nc4']:.4f} (mismatch of classifier and nearest mean)")
    if u is not None:
        lb = "not proved" if u["lower_bound"] is None else f"{u['lower_bound']:.10f}"
        lines += [f"UFM: loss {u['loss']:.10f}, proved lower bound {lb}, certified {u['certified']}"
                  + ("  (counts scaled down)" if res["counts_scaled"] else ""),
                  f"  predicted {u['prediction']['geometry']}: {u['prediction']['reason']}",
                  "  cosines between class means:", fmt_matrix(u["mean_cosines"], "    "),
                  f"  delta_gm {u['delta_gm']:.4f}",
                  f"distance_to_ufm {res['distance_to_ufm']:.4f} (0: the UFM's geometry up to scale)"]
    return "\n".join(lines)


def run(args) -> int:
    from solvers.workflows.measure import measure

    from ufm import runs
    from ufm.records import RecordsError

    try:
        res = measure(args.embeddings, args.labels, args.classifier, key=args.key, labels_key=args.labels_key,
                      classifier_key=args.classifier_key, header=True if args.header else None, loss=args.loss,
                      tau=args.tau, nonneg=args.nonneg, batching=args.batching, batches=args.batches,
                      weight_decay=args.weight_decay, seed=args.seed, ufm=not args.no_ufm, out=args.out)
    except runs.FolderError as e:  # the folder is named by its flag here
        raise UsageError(f"--{e}" if str(e).startswith("out ") else str(e)) from None
    except (RecordsError, ValueError) as e:  # an input file, or a field the UFM problem refused
        raise UsageError(str(e)) from None
    print(dumps(res) if args.json else summary(res))
    return 0
