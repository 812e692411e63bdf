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
    "DEFAULT_CG_MIN",
    "DEFAULT_CG_MULTICLASS",
    "DEFAULT_CG_PER_EPOCH",
    "DEFAULT_METHOD",
    "DEFAULT_POLISH",
    "DEFAULT_POLISH_LR",
    "DEFAULT_POLISH_SHARE",
    "DEFAULT_STEPS",
    "DEFAULT_STEP_TOL",
    "DEFAULT_TOL",
    "FACTORED_SOLVERS",
    "METHODS",
    "PCG_PRECONDITIONER",
    "SOLVERS",
]

METHODS = ("influence", "newton")
SOLVERS = ("auto", "cholesky", "eigh", "cg", "pcg", "kfac", "ekfac", "woodbury")
FACTORED_SOLVERS = ("kfac", "ekfac", "woodbury")
"""Solvers that build a representation of the GGN once at θ̂ (:mod:`mlu.engine.curvature`, the
one the Unlearner uses) and reuse it for every step: one pass over the data to build, no
Hessian-vector products in the solve. ``"pcg"`` builds EK-FAC once too, as CG's
preconditioner."""
PCG_PRECONDITIONER = "ekfac"
"""The representation ``solver="pcg"`` preconditions CG with (built once per call)."""

DEFAULT_METHOD = "newton"
DEFAULT_CURVATURE = "ggn"
DEFAULT_DAMPING = 0.01
DEFAULT_STEPS = 1
DEFAULT_CG_PER_EPOCH = 0.1
"""CG iterations of the default (truncated) Newton step per epoch the model was trained for,
rounded, plus :data:`DEFAULT_CG_MULTICLASS` for more than two classes, at least
:data:`DEFAULT_CG_MIN`: two for the paper's two-class models (20 epochs), three for 10 classes
and 20 epochs, two for 10 classes and 10 epochs. Each iteration is one curvature-vector product,
a pass over R of the order of an SGD epoch's cost, so the step keeps its share of a retraining's
cost as training grows. On the two-class cells of the pipeline table two products
met the accuracy targets better than three or four at less cost
(studies/default_unlearning/default_unlearning.md)."""
DEFAULT_CG_MIN = 2
"""The fewest CG iterations of the default Newton step."""
DEFAULT_CG_MULTICLASS = 1
"""One more CG iteration for more than two classes: their Gauss-Newton matrix has k − 1
independent rows per sample where two classes have one, so its Krylov space fills more slowly.
On 10-class digits with 30% flipped labels (``mlu demo``) two products left the unlearned model
0.7 points below retraining on the kept samples, three matched it
(studies/default_unlearning/demo_case.md)."""
DEFAULT_POLISH = 32
"""SGD steps (minibatches of the model's batch size) on the retained set after the Newton
step(s) of the default recipe, at most :data:`DEFAULT_POLISH_SHARE` of the steps a retraining on
R would take: one epoch over R on the paper's 1000-sample sets, a few hundredths of an epoch on
Fashion-MNIST's 60000 samples (benchmarks/results/unlearn_large_60000.md; docs/design.md,
"The default unlearning")."""
DEFAULT_POLISH_SHARE = 0.05
"""The default polish's cap, as a share of the SGD steps of a retraining on R."""
DEFAULT_POLISH_LR = 0.5
"""The polish's learning rate as a fraction of the model's ``lr``."""
DEFAULT_TOL = 1e-6
DEFAULT_STEP_TOL = 1e-3
"""CG's relative residual: :data:`DEFAULT_TOL` for the influence update; each Newton step stops
at :data:`DEFAULT_STEP_TOL` or its CG budget, whichever comes first (an inexact Newton method),
unless ``tol`` is given."""

DEFAULTS = MappingProxyType(
    {
        "method": DEFAULT_METHOD,
        "curvature": DEFAULT_CURVATURE,
        "damping": DEFAULT_DAMPING,
        "steps": DEFAULT_STEPS,
    }
)
"""The one set of unlearning defaults, shared by :func:`mlu.unlearn`, ``mlu clean``, ``mlu
demo``, the experiment driver and the README: one truncated Newton step on the retained
objective L_R (Gauss-Newton curvature, damping δ = 0.01, CG stopped after
:data:`DEFAULT_CG_PER_EPOCH` products per training epoch), then a polish of
:data:`DEFAULT_POLISH` SGD steps on R (at most 5% of the model's training steps) at half its
learning rate, each update checked against L_R. ``mlu.unlearn(model, X, y, F)`` and
``mlu.unlearn(model, X, y, F, **DEFAULTS)`` are the same call (the CG budget and the polish are
sized from the model's training when ``tol``, ``maxiter`` and ``polish`` are not given).

Chosen by benchmarks/pipeline_table.py, which times every cell's unlearning against a retraining
on the same kept samples in the same run (benchmarks/results/pipeline_table.md; the candidates
and their numbers: docs/design.md, "The default unlearning"). The previous default, eight Newton
steps solved by CG to 1e-3, was as accurate but cost 2-9 retrainings.
"""
