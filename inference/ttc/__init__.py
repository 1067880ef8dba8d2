"""Test-time compute statistics: exact per-problem estimators (pass@k, majority, best-of-n, weighted
vote), aggregation with bootstrap CIs, the FLOPs axis, plots, and other tools' sample formats.
Reads scored-sample tables only; generates nothing.

The rooms of `inference/` and their order: inference/README.md.
"""
