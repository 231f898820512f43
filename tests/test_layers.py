"""The layers: the model (``ufm``, outside ``ufm/cli``) imports nothing from the engines, workflows or
benchmarks, and the model's modules import each other without cycles."""
import ast
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def type_checking_only(tree: ast.AST) -> set[ast.AST]:
    """The import nodes inside ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``) blocks: read by type checkers,
    never run, so they make no import cycle."""
    out: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING" or
                                         isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING"):
            out |= {n for stmt in node.body for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return out


def imports(path: pathlib.Path, runtime_only: bool = False) -> set[str]:
    """Absolute module names ``path`` imports (relative imports resolved inside the ``ufm`` package);
    ``runtime_only`` leaves out the imports made for type checkers alone (:func:`type_checking_only`)."""
    out = set()
    pkg = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    tree = ast.parse(path.read_text())
    skip = type_checking_only(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if node in skip:
            continue
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
    graph = {n: {m for m in imports(p, runtime_only=True) if m in names and m != n} for n, p in names.items()
             if not n.endswith("ufm")}
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


def test_only_type_checking_imports_are_left_out_of_the_cycle_check():
    """An import under ``if TYPE_CHECKING:`` never runs, so the cycle check leaves it out; the layer rule above
    still reads it (``imports`` without ``runtime_only``: the model may not name the engines even for a type
    checker)."""
    tree = ast.parse("import typing\nfrom typing import TYPE_CHECKING\nimport numpy\nif TYPE_CHECKING:\n"
                     "    from .problem import Problem\nif typing.TYPE_CHECKING:\n    import solvers\n"
                     "if True:\n    import os\n")
    names = {a.name for n in type_checking_only(tree) for a in n.names}
    assert names == {"Problem", "solvers"}


def test_engines_never_import_workflows_or_the_command_line():
    """The engines import no workflow. The package's facade (``solvers/__init__.py``) names the workflows' one-call
    functions lazily only (``_EXPORTS``, and for type checkers under ``TYPE_CHECKING``): importing ``solvers``
    loads no workflow."""
    facade = ROOT / "solvers" / "__init__.py"
    engines = [p for p in (ROOT / "solvers").rglob("*.py")
               if not {"workflows", "deepnet"} & set(p.relative_to(ROOT / "solvers").parts) and p != facade]
    bad = {str(p.relative_to(ROOT)): sorted(m for m in imports(p) if m.startswith(("solvers.workflows",
           "solvers.deepnet", "ufm.cli"))) for p in engines}
    assert not {k: v for k, v in bad.items() if v}
    tree = ast.parse(facade.read_text())
    runtime = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not [n for n in runtime if "workflows" in ast.unparse(n) or "deepnet" in ast.unparse(n)]
    code = "import sys, solvers; print(any(m.startswith('solvers.workflows') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "False", out.stderr


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


def _names_loss(node) -> bool:
    """``loss``, ``x.loss``, ``x["loss"]`` (and ``loss_type``): an expression holding a loss name."""
    keys = ("loss", "loss_type")
    if isinstance(node, ast.Name):
        return node.id in keys
    if isinstance(node, ast.Attribute):
        return node.attr in keys
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value in keys
    return False


def _strings(node) -> set:
    """The string literals ``node`` is or holds (a tuple, list or set of them)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(*(_strings(e) for e in node.elts)) if node.elts else set()
    return set()


def name_comparisons(path: pathlib.Path, root: pathlib.Path = ROOT) -> list[str]:
    """``line: source`` of every comparison in ``path`` of a loss name with a string literal, or of a ``kind`` with
    ``"classifier"`` / ``"contrastive"``: what the objective's record should be asked instead."""
    text = path.read_text()
    out = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        literals = set().union(*(_strings(s) for s in sides))
        loss = any(_names_loss(s) for s in sides) and literals
        kind = (any(isinstance(s, ast.Name) and s.id == "kind" or isinstance(s, ast.Attribute) and s.attr == "kind"
                    for s in sides) and literals & {"classifier", "contrastive"})
        if loss or kind:
            out.append(f"{path.relative_to(root)}:{node.lineno}: {ast.get_source_segment(text, node)}")
    return out


def test_no_loss_name_comparisons_outside_the_objectives():
    """Engines, workflows and the command line ask the objective (``ufm.objectives``: ``relaxation``,
    ``dual_bound``, ``class_level``, ``summary_fields``, ``deepnet`` ...), never a loss's name or kind: a new
    classifier loss must not be taken for cross-entropy."""
    objectives = ROOT / "ufm" / "objectives"
    files = [p for d in ("ufm", "solvers") for p in (ROOT / d).rglob("*.py") if objectives not in p.parents]
    assert len(files) > 50
    assert not [hit for p in files for hit in name_comparisons(p)]


def test_the_name_scan_finds_what_it_forbids(tmp_path):
    """The scan itself: each forbidden form is caught, a comparison with the registry is not."""
    src = tmp_path / "x.py"
    forms = ['loss == "ce"', 'p.loss != "sc"', 'p["loss"] in ("sc", "ce")', 'obj.kind == "classifier"',
             'loss in NAMES', 'kind == "step"']
    src.write_text("\n".join(forms) + "\n")
    hits = name_comparisons(src, tmp_path)
    assert [h.split(":")[1] for h in hits] == ["1", "2", "3", "4"]


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
