"""ufm benchmarks: scripts that time solvers and write JSON to ``benchmarks/results/``."""
