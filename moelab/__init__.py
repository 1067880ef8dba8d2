"""moelab: a reasoning post-training and test-time compute lab for sparse MoE checkpoints."""

__version__ = "0.1.0"
