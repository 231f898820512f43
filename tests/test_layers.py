"""The layers: the model (``ufm``, outside ``ufm/cli``) imports nothing from the engines, workflows or
benchmarks, and the model's modules import each other without cycles."""
import ast
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
    engines = [p for p in (ROOT / "solvers").rglob("*.py")
               if not {"workflows", "deepnet"} & set(p.relative_to(ROOT / "solvers").parts)]
    bad = {str(p.relative_to(ROOT)): sorted(m for m in imports(p) if m.startswith(("solvers.workflows",
           "solvers.deepnet", "ufm.cli"))) for p in engines}
    assert not {k: v for k, v in bad.items() if v}


def private_imports(path: pathlib.Path) -> list[str]:
    """``from X import _name`` in ``path``: a name another module keeps private. A package's own private
    submodules (``from . import _contrastive``) are its own to import."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            own_submodule = node.level == 1 and node.module is None
            out += [f"{'.' * node.level}{node.module or ''} import {a.name}" for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__") and not own_submodule]
    return out


def test_no_module_imports_another_modules_private_name():
    """What one module uses of another is public (no leading underscore), so a module's private names can change
    without breaking another."""
    files = [p for d in ("ufm", "solvers") for p in (ROOT / d).rglob("*.py")]
    bad = {str(p.relative_to(ROOT)): private_imports(p) for p in files}
    assert not {k: v for k, v in bad.items() if v}
