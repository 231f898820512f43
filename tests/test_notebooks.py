"""The notebooks run top to bottom on their small default parameters (so they never rot)."""
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
