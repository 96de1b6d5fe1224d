"""reward: the EditReward model, its training, evaluation and serving.

Sub-packages (each ``__init__`` is a docstring only; import the modules themselves):

- ``reward.model``: the model config, the VLM backbone, input building, ``EditRewardModel`` and its checkpoints;
- ``reward.train``: preference pairs, tie handling, losses and the training loop (``editrl reward train``);
- ``reward.eval``: metrics, benchmark loaders, the editworld bench, Table 2 and the ablations;
- ``reward.serve``: in-process scoring, the client, the Ray service and its throughput benchmark.
"""
