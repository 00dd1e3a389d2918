"""Using trained models: predictions and embeddings of new molecules, packaged MLflow models.

Layer: after ``models`` and before ``train`` (fine-tuning packages its model with
:mod:`bbmn.inference.pyfunc`), so nothing here imports ``train`` at module level: its helpers
(checkpoints, devices, :func:`~bbmn.train.runtime.peak_rss_mb`) are imported where they are used.
Nothing imports ``cli``.
"""
