"""CVLS ablation suite: library code (data, model, losses, metrics, training, evaluation, tracking)."""
