"""Build hooks of the documentation site (docs/mkdocs.yml).

* The pages are the repository's own files, added at the paths they have in the repository (README.md as the
  home page, docs/*.md, notebooks/*.ipynb, the figures under benchmarks/results/, LICENSE), so that every relative link
  of README.md and docs/ resolves on the site exactly as it does on disk.
* The API reference is generated from ``ufm.__all__`` and ``solvers.__all__``: one section per public name, so a
  name added to ``__all__`` appears without editing a page (``tests/test_docs.py`` checks each has a docstring).
* MathJax is copied into the site from the ``jupyter-server-mathjax`` package (the ``docs`` extra), so the maths
  renders without a network.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import shutil
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "ufm": "the model: problems, losses, constraints, geometry, theory, batchings, the tracker",
    "solvers": "the engines: projected gradient, epochs, convex relaxations, proved bounds, certificates",
}


def repository_files() -> list[str]:
    """The repository paths that become pages or assets of the site."""
    paths = ["README.md", "LICENSE"]
    paths += [f"docs/{p.name}" for p in sorted((ROOT / "docs").glob("*.md"))]
    paths += [f"notebooks/{p.name}" for p in sorted((ROOT / "notebooks").glob("*.ipynb"))]
    paths += [f"benchmarks/results/{p.name}" for p in sorted((ROOT / "benchmarks/results").glob("*.png"))]
    return paths


def object_path(package: str, name: str) -> str:
    """The dotted path where ``package.name`` is defined (the public names load lazily from submodules)."""
    module = importlib.import_module(package)
    obj = getattr(module, name)
    if hasattr(obj, "__path__") or type(obj).__name__ == "module":
        return obj.__name__
    return f"{obj.__module__}.{obj.__qualname__}"


def api_page(package: str) -> str:
    module = importlib.import_module(package)
    lines = [f"# API reference: `{package}`", "",
             f"`{package}`: {PACKAGES[package]}. One section per name of `{package}.__all__`, in that order; "
             "each is the object's own docstring.", ""]
    for name in module.__all__:
        if name.startswith("__"):
            continue
        public = f"{package}.{name}"
        lines += [f"::: {object_path(package, name)}", "    options:", f'      heading: "{public}"',
                  f'      toc_label: "{public}"', ""]
    return "\n".join(lines)


@event_priority(100)  # before mkdocs-jupyter, which turns the notebooks added here into pages
def on_files(files: Files, config) -> Files:
    out = Files([f for f in files if not f.src_uri.startswith(("docs/", "notebooks/", "api/", "benchmarks/"))])
    for path in repository_files():
        out.append(File(path, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    for package in PACKAGES:
        out.append(File.generated(config, f"api/{package}.md", content=api_page(package)))
    return out


def on_post_build(config) -> None:
    dist = importlib.metadata.distribution("jupyter-server-mathjax")
    static = Path(dist.locate_file("jupyter_server_mathjax/static"))
    dest = Path(config["site_dir"]) / "mathjax"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(static, dest, ignore=shutil.ignore_patterns("localization", "*.md"))
