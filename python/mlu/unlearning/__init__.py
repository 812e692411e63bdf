"""Unlearning: removing samples' effect from a trained model, and the deletion service.

``unlearn`` (:func:`mlu.unlearn`), ``unlearner`` (:class:`mlu.Unlearner`, deletion requests),
``forgetting`` (the post-update that hides memorised samples), ``store`` (the crash-safe
:class:`mlu.DeletionStore`), ``certified``, ``baselines`` and ``sisa`` (what unlearning is
measured against), ``result`` (:class:`mlu.UnlearningResult`). Built on the engine
(docs/design.md, "Module map and layers").
"""
