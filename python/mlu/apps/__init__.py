"""The applications: what a user runs, built from the layers below.

``clean`` (:func:`mlu.clean`, ``mlu clean``) and its ``cleanreport``, ``demo`` (``mlu demo``),
``cli`` and ``forget_cli`` (the ``mlu`` command), ``experiments`` (the experiment driver;
``experiment`` is its older name) (docs/design.md, "Module map and layers").
"""
