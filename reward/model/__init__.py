"""reward.model: what a reward checkpoint is.

``config`` (RewardModelConfig, saved in every checkpoint), ``backbone`` (the Qwen2.5-VL-architecture backbone
and processor, tiny or loaded), ``inputs`` (prompt and batch building) and ``editreward`` (EditRewardModel, its
Gaussian heads, ``build_reward_model``, ``save_checkpoint`` / ``load_checkpoint``).
"""
