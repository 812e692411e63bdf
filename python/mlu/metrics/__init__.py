"""Metrics for detection (against the true flipped mask) and for unlearning (against retraining)."""
