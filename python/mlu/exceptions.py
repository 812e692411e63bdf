"""Every exception and warning class mlu raises of its own, in one place.

All are also importable from :mod:`mlu`. Errors of bad input are the built-in ``ValueError`` and
``TypeError`` (and scikit-learn's ``NotFittedError``); the classes here name the failures a
caller may want to catch on their own.
"""

from ._core import NotPositiveDefiniteError

__all__ = [
    "HessianTooLargeError",
    "NoiseRateWarning",
    "NotCertifiedWarning",
    "NotPositiveDefiniteError",
    "RequestFailedError",
    "StoreCorruptError",
    "StoreLockedError",
    "UnscaledFeaturesWarning",
    "UpdateShortenedWarning",
]

# NotPositiveDefiniteError (a ValueError) is defined by the C++ core, which raises it when a
# Cholesky factorisation of H + δI fails; it is re-exported here.


class HessianTooLargeError(MemoryError):
    """The p x p matrix asked for would not fit in memory."""


class NoiseRateWarning(UserWarning):
    """The scores do not separate into two groups well enough to trust a noise-rate estimate."""


class UpdateShortenedWarning(RuntimeWarning):
    """An unlearning update would have increased the retained objective and was shortened."""


class UnscaledFeaturesWarning(UserWarning):
    """Features look unscaled (far outside [0, 1], not standardised): training may fail."""


class NotCertifiedWarning(RuntimeWarning):
    """A removal asked to be certified (``certify=(ε, δ)``) exceeded its residual budget."""


class RequestFailedError(RuntimeError):
    """A deletion request of :class:`mlu.Unlearner` whose update fails its check (after a
    refinement, for a factored curvature): nothing was changed."""


class StoreCorruptError(Exception):
    """A deletion store's log, state or model file is damaged or disagrees with its log.

    Raised by :class:`mlu.DeletionStore` instead of serving a model it cannot vouch for.
    """


class StoreLockedError(TimeoutError):
    """Another process held a deletion store's write lock for longer than the timeout."""
