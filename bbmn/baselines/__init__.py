"""Baselines trained on exactly the splits fine-tuning uses (issue 8).

Each baseline reads the cleaned Parquet (``bbmn clean``) and a split file (``bbmn split``), trains
on the split's train rows, selects on its validation rows, scores its test rows with
:func:`bbmn.eval.metrics.score`, and writes a run directory whose ``metrics.json`` the table step
(:mod:`bbmn.eval.tables`) reads beside the fine-tuning runs':

- :mod:`bbmn.baselines.ecfp_rf`: ECFP4 (Morgan radius 2, 2048 bits) + random forest;
- :mod:`bbmn.baselines.chemprop_run`: chemprop v2's D-MPNN (optional install extra).
"""
