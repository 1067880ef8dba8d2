"""The reasoning-deficit analysis (`moelab deficit`): every instrument's output joined per model, gap
tests, the six figures and the plain-language report. Reads only files the instruments and sweeps wrote.

The rooms of `inference/` and their order: inference/README.md.
"""
