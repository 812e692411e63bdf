"""Data: the bundled and offline data sets, the label-noise model and users' own files.

``datasets`` (digits, Fashion-MNIST, synthetic), ``noise`` (label flips), ``userdata``
(``.npz``/CSV/Parquet/IDX files and models for ``mlu clean``) (docs/design.md, "Module map and
layers").
"""
