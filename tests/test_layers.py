"""The layers: the model (``ufm``, outside ``ufm/cli``) imports nothing from the engines, workflows or
benchmarks, and the model's modules import each other without cycles."""
import ast
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def imports(path: pathlib.Path) -> set[str]:
    """Absolute module names ``path`` imports (relative imports resolved inside the ``ufm`` package)."""
    out = set()
    pkg = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


def core_modules():
    return [p for p in (ROOT / "ufm").rglob("*.py") if "cli" not in p.relative_to(ROOT / "ufm").parts]


def test_core_never_imports_engines_workflows_or_benchmarks():
    bad = {str(p.relative_to(ROOT)): sorted(m for m in imports(p) if m.split(".")[0] in ("solvers", "benchmarks"))
           for p in core_modules()}
    assert not {k: v for k, v in bad.items() if v}


def test_core_modules_form_no_import_cycle():
    names = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in core_modules()}
    graph = {n: {m for m in imports(p) if m in names and m != n} for n, p in names.items() if not n.endswith("ufm")}
    state = {}

    def visit(n, path):
        state[n] = "open"
        for m in graph.get(n, ()):
            assert state.get(m) != "open", " -> ".join(path + [m])
            if m not in state:
                visit(m, path + [m])
        state[n] = "done"

    for n in graph:
        if n not in state:
            visit(n, [n])


def test_engines_never_import_workflows_or_the_command_line():
    engines = [p for p in (ROOT / "solvers").glob("*.py")]
    bad = {str(p.relative_to(ROOT)): sorted(m for m in imports(p) if m.startswith(("solvers.workflows",
           "solvers.deepnet", "ufm.cli"))) for p in engines}
    assert not {k: v for k, v in bad.items() if v}


def test_no_submodule_shadows_a_lazy_function():
    """A package attribute that is a function must not share its name with a submodule: importing the submodule
    (``from solvers.X import ...``) would replace the function on the package with the module."""
    import importlib

    for name in ("ufm", "solvers"):
        pkg = importlib.import_module(name)
        folder = os.path.dirname(pkg.__file__)
        subs = {f[:-3] for f in os.listdir(folder) if f.endswith(".py")} | {
            d for d in os.listdir(folder) if os.path.isfile(os.path.join(folder, d, "__init__.py"))}
        for public in pkg.__all__:
            target = pkg._EXPORTS.get(public) if hasattr(pkg, "_EXPORTS") else None
            if target is not None and target[1] is not None:
                assert public not in subs, f"{name}.{public} is a function and a submodule"
    import solvers
    import solvers.certificate  # noqa: F401
    assert callable(solvers.certify) and not isinstance(solvers.certify, type(solvers))
