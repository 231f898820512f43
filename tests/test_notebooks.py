"""The notebooks run top to bottom on their small default parameters (so they never rot), each says at the top what
it shows and how long it takes, and the command the README gives to run them is the one used here (nbclient's
``jupyter execute``, in-process)."""
import os

import pytest

pytestmark = pytest.mark.slow  # every test here takes seconds: the full suite only

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(f for f in os.listdir(os.path.join(ROOT, "notebooks")) if f.endswith(".ipynb"))


def test_there_are_notebooks():
    assert {"01_theorems.ipynb", "02_phase_plots.ipynb", "03_batching.ipynb", "04_your_network.ipynb"} <= set(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_says_what_it_shows_and_how_long_it_takes(name):
    book = nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)
    head = "".join(book.cells[0].source)
    assert book.cells[0].cell_type == "markdown" and head.startswith("# ")
    assert "**Shows:**" in head and "**Runs in:**" in head and "jupyter execute notebooks/" + name in head


def test_readme_gives_the_run_command():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert "jupyter execute notebooks/*.ipynb" in readme and "'.[notebooks]'" in readme


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, tmp_path, monkeypatch):
    book = nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)
    assert all(not c.get("outputs") for c in book.cells if c.cell_type == "code"), "commit with outputs cleared"
    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(book, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in book.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
