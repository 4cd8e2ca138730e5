"""Training-only code: the NumPy forward pass and the .tflite writer used by
``scripts/train_model.py``, the model benchmark and the parity tests.

It lives outside the device package on purpose: the appliance only loads and runs a model
(``edge.decide.scorer``); writing one, or re-computing it in NumPy, never happens on a shelf.
"""
