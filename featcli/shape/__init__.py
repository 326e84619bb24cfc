"""Torch-exact shape arithmetic in pure Python (no numpy, no torch): per-axis formulas, the solver,
one rule per kind of stage, the walk (`infer`), its report, and the `featcli shape -` service."""
