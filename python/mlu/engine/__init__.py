"""The engine: the model and the math every other layer stands on.

``model`` (the :class:`~mlu.MLP` estimator), ``curvature`` (one layer of curvature
representations and solvers: dense, Woodbury, K-FAC, EK-FAC, CG and CG preconditioned by a
factored form), ``_problem`` (data checked, encoded and scaled once into a core problem),
``_safeguard`` (the one checked-update routine), ``_dask`` (the same math over row chunks),
``reference`` (the pure-NumPy specification of every kernel), ``io``/``interop`` (models in and
out). It imports nothing from the layers above (docs/design.md, "Module map and layers").
"""
