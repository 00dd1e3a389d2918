"""Using trained models: predictions and embeddings of new molecules, packaged MLflow models.

Layer: after ``models`` and before ``train`` (fine-tuning packages its model with
:mod:`bbmn.inference.pyfunc`); nothing here imports ``train`` or ``cli``.
"""
