"""checkpoints_index"""
