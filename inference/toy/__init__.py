"""The study in miniature: the toy family's evaluator (`moelab toy eval`) and the toy sparsity grid
(`moelab toy grid`), with the grid's recipe schema beside its runner.

The rooms of `inference/` and their order: inference/README.md.
"""
