"""Metrics for detection (against the true flipped mask) and for unlearning (against retraining)."""

from . import detection, unlearning
from .detection import average_precision, detection_report, precision_at_k, roc_auc
from .unlearning import (
    accuracy,
    evaluate_unlearning,
    forget_retain_accuracy,
    membership_inference_auc,
    parameter_distance,
    per_class_accuracy,
    prediction_agreement,
    sample_losses,
    speedup,
)

__all__ = [
    "accuracy",
    "average_precision",
    "detection",
    "detection_report",
    "evaluate_unlearning",
    "forget_retain_accuracy",
    "membership_inference_auc",
    "parameter_distance",
    "per_class_accuracy",
    "precision_at_k",
    "prediction_agreement",
    "roc_auc",
    "sample_losses",
    "speedup",
    "unlearning",
]
