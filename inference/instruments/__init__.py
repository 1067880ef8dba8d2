"""The study's two instruments: lm-eval few-shot benchmarks (`moelab eval`) and task loss
(`moelab taskloss`), their recipe schemas and the one command-line face they share.

The rooms of `inference/` and their order: inference/README.md.
"""
