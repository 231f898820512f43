"""The default step budgets of the projected-gradient solves, each named once.

Every signature and command-line flag that takes a ``steps`` budget reads its default from here (and a flag's help
prints it), so a budget is changed in one place. The three differ by path (docs/design.md, "Defaults"):

* :data:`DEFAULT_STEPS`: a sample-level solve (``solvers.pgd.solve`` / ``solve_many``) and the commands and
  workflows that run one per point or per start (``ufm solve``, ``certify``, ``verify``, ``sweep``,
  ``landscape``).
* :data:`CLASS_STEPS`: the class-level and reduced solvers (``solvers.classlevel``, ``solvers.reduced``) and the
  phase diagrams built on them: problems of ``K x r`` (or ``G x (G + 1)``) numbers that stop on their loss
  tolerance.
* :data:`REFERENCE_STEPS`: the one UFM solve a network is compared with (``solvers.deepnet.compare``,
  ``ufm_reference``, ``solvers.workflows.measure``, ``ufm train --ufm-steps``, ``ufm.Tracker``'s reference).

A solve stops earlier when it meets its tolerance; the budget only caps it. The values are those the recorded
results were computed with (``tests/test_golden.py``): changing one changes answers.
"""
from __future__ import annotations

__all__ = ["DEFAULT_STEPS", "CLASS_STEPS", "REFERENCE_STEPS"]

DEFAULT_STEPS = 5000
CLASS_STEPS = 4000
REFERENCE_STEPS = 20000
