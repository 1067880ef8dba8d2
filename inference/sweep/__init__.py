"""Test-time compute sweeps (`moelab sweep`): models x datasets x temperatures x N samples -> store ->
scores -> metrics -> plots, each stage talking to the next through files.

The rooms of `inference/` and their order: inference/README.md.
"""
