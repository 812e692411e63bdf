"""Did a deletion request forget? Membership inference on the forgotten samples against unseen
ones, optionally next to a model retrained without them (docs/design.md, "Forgetting modes")."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from sklearn.metrics import roc_auc_score

from .unlearning import sample_losses

__all__ = ["ForgettingReport", "forgetting_report", "loss_auc"]


def loss_auc(member_losses, outsider_losses) -> float:
    """ROC-AUC of the loss-threshold attack: P(member loss < outsider loss) + ½ P(equal).

    Parameters
    ----------
    member_losses : array-like, shape (m,)
        Scores of the samples the attacker should call members (the forgotten ones).
    outsider_losses : array-like, shape (t,)
        Scores of unseen samples.

    Returns
    -------
    float in [0, 1]
        0.5: indistinguishable; above: the members have lower loss.

    Raises
    ------
    ValueError
        An empty or non-finite input.
    """
    a = np.asarray(member_losses, dtype=np.float64).ravel()
    b = np.asarray(outsider_losses, dtype=np.float64).ravel()
    for name, v in (("member_losses", a), ("outsider_losses", b)):
        if v.size == 0:
            raise ValueError(f"{name} is empty")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{name} has non-finite values")
    labels = np.r_[np.ones(a.size), np.zeros(b.size)]
    return float(roc_auc_score(labels, -np.r_[a, b]))


def _calibrated(
    loss_f: np.ndarray, y_f: np.ndarray, loss_u: np.ndarray, y_u: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Losses minus the mean unseen loss of their class (both sets)."""
    classes, where_u = np.unique(y_u, return_inverse=True)
    means = np.bincount(where_u, weights=loss_u) / np.bincount(where_u)
    col = np.clip(np.searchsorted(classes, y_f), 0, len(classes) - 1)
    missing = classes[col] != y_f
    if missing.any():
        raise ValueError(
            f"class {y_f[np.flatnonzero(missing)[0]]!r} of a forgotten sample has no unseen "
            "sample: the per-class calibration needs unseen samples of every forgotten class"
        )
    return loss_f - means[col], loss_u - means[where_u]


def _numbers(model, X_f, y_f, X_u, y_u) -> tuple[float, float, float, float, np.ndarray]:
    loss_f = sample_losses(model, X_f, y_f)
    loss_u = sample_losses(model, X_u, y_u)
    cf, cu = _calibrated(loss_f, np.asarray(y_f), loss_u, np.asarray(y_u))
    return (
        loss_auc(loss_f, loss_u),
        loss_auc(cf, cu),
        float(loss_f.mean()),
        float(loss_u.mean()),
        loss_f,
    )


@dataclass(frozen=True)
class ForgettingReport:
    """What :func:`forgetting_report` measured. ``None``: not computable from what was given.

    Attributes
    ----------
    n_forget, n_unseen : int
    mia_auc : float
        Loss-threshold membership-inference AUC of the model (forgotten vs unseen).
    mia_auc_calibrated : float
        The same with every loss minus the mean unseen loss of its class.
    forget_loss, unseen_loss : float
        Mean loss of the forgotten and of the unseen samples.
    loss_shift : float
        ``forget_loss − unseen_loss`` (negative: the forgotten samples are still fitted better
        than unseen data).
    reference_mia_auc, reference_mia_auc_calibrated, reference_loss_shift : float or None
        The same numbers for the reference (retrained without the forgotten samples).
    forget_loss_vs_reference : float or None
        Mean loss of the forgotten samples under the model minus under the reference.
    original_mia_auc, original_mia_auc_calibrated : float or None
        The numbers for the original model (before the request).
    gap_closed, gap_closed_calibrated : float or None
        ``(original − model) / (original − reference)`` of the AUC: 1 means the request made
        the forgotten samples as hard to recognise as retraining did, 0 that it changed
        nothing. ``None`` without both models or when original and reference tie.
    """

    n_forget: int
    n_unseen: int
    mia_auc: float
    mia_auc_calibrated: float
    forget_loss: float
    unseen_loss: float
    loss_shift: float
    reference_mia_auc: float | None = None
    reference_mia_auc_calibrated: float | None = None
    reference_loss_shift: float | None = None
    forget_loss_vs_reference: float | None = None
    original_mia_auc: float | None = None
    original_mia_auc_calibrated: float | None = None
    gap_closed: float | None = None
    gap_closed_calibrated: float | None = None

    def as_dict(self) -> dict[str, float]:
        """The computed numbers as floats (``None`` fields left out)."""
        return {
            f.name: float(getattr(self, f.name))
            for f in fields(self)
            if getattr(self, f.name) is not None
        }

    def summary(self) -> str:
        """A few readable lines."""
        lines = [
            f"membership inference, {self.n_forget} forgotten vs {self.n_unseen} unseen samples "
            "(AUC 0.5 = indistinguishable)",
            f"  model:     AUC {self.mia_auc:.3f} "
            f"(per-class calibrated {self.mia_auc_calibrated:.3f}), "
            f"loss forgotten {self.forget_loss:.4f} vs unseen {self.unseen_loss:.4f}"
            f" (shift {self.loss_shift:+.4f})",
        ]
        if self.original_mia_auc is not None:
            lines.append(
                f"  original:  AUC {self.original_mia_auc:.3f} "
                f"(calibrated {self.original_mia_auc_calibrated:.3f})"
            )
        if self.reference_mia_auc is not None:
            lines.append(
                f"  reference: AUC {self.reference_mia_auc:.3f} "
                f"(calibrated {self.reference_mia_auc_calibrated:.3f}), "
                f"shift {self.reference_loss_shift:+.4f}; forgotten loss vs reference "
                f"{self.forget_loss_vs_reference:+.4f}"
            )
        if self.gap_closed is not None:
            cal = (
                "n/a"
                if self.gap_closed_calibrated is None
                else f"{100 * self.gap_closed_calibrated:.0f}%"
            )
            lines.append(
                f"  gap to the reference closed: {100 * self.gap_closed:.0f}% (calibrated {cal})"
            )
        return "\n".join(lines)


def _share(orig: float, model: float, ref: float) -> float | None:
    gap = orig - ref
    return None if abs(gap) < 1e-12 else (orig - model) / gap


def forgetting_report(
    model, X_forget, y_forget, X_unseen, y_unseen, reference=None, *, original=None
) -> ForgettingReport:
    """Membership inference on forgotten samples, against unseen ones and optionally retraining.

    The attack is a loss threshold (Yeom et al., 2018): the lower a sample's loss, the more it
    looks trained on. ``mia_auc`` is its ROC-AUC telling the forgotten samples (positives) from
    unseen ones by the negated loss (:func:`loss_auc`), so 0.5 means indistinguishable. The
    *calibrated* variant subtracts from every loss, forgotten and unseen, the mean loss of its
    class on the unseen samples (one offset per class, not per-class thresholds), so that a
    class that is simply harder does not count as membership. The loss shift is the mean
    forgotten loss minus the mean unseen loss.

    Parameters
    ----------
    model : fitted classifier with ``predict_proba`` and ``classes_``
        The model after the deletion request.
    X_forget : array-like, shape (m, d)
    y_forget : array-like, shape (m,)
        The forgotten samples and the labels they were trained with.
    X_unseen : array-like, shape (t, d)
    y_unseen : array-like, shape (t,)
        Samples none of the models was trained on (a test set); every class of ``y_forget``
        must occur in it (for the calibration).
    reference : fitted classifier, optional
        A model retrained without the forgotten samples: the same numbers for it.
    original : fitted classifier, optional
        The model before the request; with ``reference``, the share of the AUC gap closed.

    Returns
    -------
    ForgettingReport
        ``.summary()`` reads as text, ``.as_dict()`` as one row of floats.

    Raises
    ------
    ValueError
        Empty sets, labels a model does not know, a forgotten class without unseen samples.
    """
    auc, cal, lf, lu, loss_f = _numbers(model, X_forget, y_forget, X_unseen, y_unseen)
    out: dict = {
        "n_forget": int(loss_f.size),
        "n_unseen": int(np.asarray(y_unseen).size),
        "mia_auc": auc,
        "mia_auc_calibrated": cal,
        "forget_loss": lf,
        "unseen_loss": lu,
        "loss_shift": lf - lu,
    }
    if reference is not None:
        r_auc, r_cal, r_lf, r_lu, _ = _numbers(reference, X_forget, y_forget, X_unseen, y_unseen)
        out.update(
            reference_mia_auc=r_auc,
            reference_mia_auc_calibrated=r_cal,
            reference_loss_shift=r_lf - r_lu,
            forget_loss_vs_reference=lf - r_lf,
        )
    if original is not None:
        o_auc, o_cal, _, _, _ = _numbers(original, X_forget, y_forget, X_unseen, y_unseen)
        out.update(original_mia_auc=o_auc, original_mia_auc_calibrated=o_cal)
        if reference is not None:
            out["gap_closed"] = _share(o_auc, auc, out["reference_mia_auc"])
            out["gap_closed_calibrated"] = _share(o_cal, cal, out["reference_mia_auc_calibrated"])
    return ForgettingReport(**out)
