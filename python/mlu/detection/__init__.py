"""Detection: scores that rank training samples by how likely their label is wrong.

``detect`` (loss, margin, AUM, self-influence, confident learning; :func:`mlu.select`'s
thresholds) and ``influence`` (influence of training samples on a loss). Built on the engine;
below the unlearning stack (docs/design.md, "Module map and layers").
"""
