"""reward.train: training a reward model on human preference pairs.

``config`` (RewardTrainConfig), ``data`` (pair loading, splits, datasets and collates), ``pairs`` (tie rules),
``loss`` (the uncertainty-aware ranking loss and its alternatives), ``trainer`` (the loop, resumable through
``editrl.checkpoint``) and ``commands`` (``editrl reward train``).
"""
