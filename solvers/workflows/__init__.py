"""Workflows: what a researcher runs, composed from the engines over the model.

``sweep`` (grids over imbalance and temperature, resumable), ``verify`` (every theorem against its statement),
``report`` (JSON-ready summaries and arrays of a solution), ``figures`` (matplotlib figures of the deep-net path).
They know about files and figures; the engines in ``solvers`` do not.
"""
