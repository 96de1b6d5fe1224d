"""reward.eval: how good a reward model is.

``metrics`` (tie-calibrated and strict group accuracy, Fisher-z Spearman, position bias), ``loaders`` (the
external benchmark layouts), ``editworld_bench`` (the editworld bench split, scorers and baselines), ``table2``
(the paper's Table 2 over checkpoints and baselines; ``table_render`` builds and draws it from score files),
``ablate`` (Tables 4 and 7) and ``commands`` (``editrl reward eval`` / ``ablate``).
"""
