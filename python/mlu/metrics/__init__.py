"""Metrics for detection (against the true flipped mask), for unlearning (against retraining) and
for forgetting (membership inference, :func:`forgetting_report`)."""

from . import detection, membership, unlearning
from .detection import average_precision, detection_report, precision_at_k, roc_auc
from .membership import ForgettingReport, forgetting_report, loss_auc
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
    "ForgettingReport",
    "accuracy",
    "average_precision",
    "detection",
    "detection_report",
    "evaluate_unlearning",
    "forget_retain_accuracy",
    "forgetting_report",
    "loss_auc",
    "membership",
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
