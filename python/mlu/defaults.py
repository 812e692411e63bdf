"""The unlearning options and their measured defaults: one leaf module that every layer reads.

:func:`mlu.unlearn`, :class:`mlu.Unlearner`, :func:`mlu.influence`, ``mlu clean``, ``mlu demo``
and the experiment driver take their defaults from here, so that the detectors (which need
only :data:`DEFAULT_DAMPING`) sit below the unlearning stack (docs/design.md, "Module map").
Why these values: docs/design.md, "The default unlearning", and the results files it cites.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = [
    "DEFAULTS",
    "DEFAULT_CURVATURE",
    "DEFAULT_DAMPING",
    "DEFAULT_CG_PER_EPOCH",
    "DEFAULT_METHOD",
    "DEFAULT_POLISH",
    "DEFAULT_POLISH_LR",
    "DEFAULT_STEPS",
    "DEFAULT_STEP_TOL",
    "DEFAULT_TOL",
    "FACTORED_SOLVERS",
    "METHODS",
    "SOLVERS",
]

METHODS = ("influence", "newton")
SOLVERS = ("auto", "cholesky", "eigh", "cg", "kfac", "ekfac")
FACTORED_SOLVERS = ("kfac", "ekfac")
"""Solvers that build a Kronecker-factored GGN once at θ̂ (:mod:`mlu.curvature`) and reuse it
for every step: one pass over the data to build, no Hessian-vector products in the solve."""

DEFAULT_METHOD = "newton"
DEFAULT_CURVATURE = "ggn"
DEFAULT_DAMPING = 0.01
DEFAULT_STEPS = 1
DEFAULT_CG_PER_EPOCH = 0.25
"""CG iterations of the default (truncated) Newton step per epoch the model was trained for, at
least one: five for ``epochs=20``, two for ``epochs=10``. Each iteration is one curvature-vector
product, a pass over R that costs about half an SGD epoch, so the step's share of the training
cost stays fixed whatever the data set size; the polish that follows finishes it."""
DEFAULT_POLISH = 0.05
"""Epochs of SGD on the retained set after the Newton step(s) of the default recipe, as a
fraction of the model's own training epochs (``epochs=20``: one epoch over R)."""
DEFAULT_POLISH_LR = 0.5
"""The polish's learning rate as a fraction of the model's ``lr``."""
DEFAULT_TOL = 1e-6
DEFAULT_STEP_TOL = 1e-3
"""CG's relative residual for a single solve (:data:`DEFAULT_TOL`: the influence update, a
Newton step asked for with ``steps``) and for each of several Newton steps
(:data:`DEFAULT_STEP_TOL`), each corrected by the next (an inexact Newton method)."""

DEFAULTS = MappingProxyType(
    {
        "method": DEFAULT_METHOD,
        "curvature": DEFAULT_CURVATURE,
        "damping": DEFAULT_DAMPING,
        "steps": DEFAULT_STEPS,
        "polish": DEFAULT_POLISH,
    }
)
"""The one set of unlearning defaults, shared by :func:`mlu.unlearn`, ``mlu clean``, ``mlu
demo``, the experiment driver and the README: one truncated Newton step on the retained
objective L_R (Gauss-Newton curvature, damping δ = 0.01, CG stopped after
:data:`DEFAULT_CG_PER_EPOCH` products per training epoch), then a polish of SGD on R for 5% of
the model's training epochs at half its learning rate, each update checked against L_R.
``mlu.unlearn(model, X, y, F)`` and ``mlu.unlearn(model, X, y, F, **DEFAULTS)`` are the same
call.

Chosen by benchmarks/pipeline_table.py, which times every cell's unlearning against a retraining
on the same kept samples in the same run (benchmarks/results/pipeline_table.md; the candidates
and their numbers: docs/design.md, "The default unlearning"). The previous default, eight Newton
steps solved by CG to 1e-3, was as accurate but cost 2-9 retrainings.
"""
