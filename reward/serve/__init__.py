"""reward.serve: score edits with a reward checkpoint, in process (``scorer``) or through a Ray service.

Layout of a running service::

    callers (RewardClient) --submit(request_id, units)--> RewardDispatcher (named async actor, holds the queue)
                                                            | batches across callers (max edits, max tokens)
                                                            v
                                          RewardReplica x R (one RewardScorer each, num_gpus / num_cpus,
                                                              placed through one placement group)

- Back-pressure: the queue is bounded in edits; ``submit`` awaits while it is full, so callers block.
- Fault tolerance: a replica that dies mid-batch is restarted by Ray (``max_restarts``) or, if it is gone
  for good (``ray.kill``), re-created by the dispatcher in the same placement-group bundle; the batch's
  units go back to the head of the queue. Each unit is answered once (a late or repeated answer is
  dropped), and a request id submitted twice is scored once.
- A bad item comes back as a ``ScoredEdit`` with ``error`` set; the rest of its batch is scored.
- Metrics (queue depth, batch sizes, edits/s, queue-wait / preprocess / forward latency) go to
  ``editrl.metrics.MetricsSink`` every ``metrics_interval_s``.

Modules: ``scorer`` (in-process scoring), ``client`` (the caller side), ``config`` (ServiceConfig, ScorerSpec,
token estimates), ``replica`` and ``dispatcher`` (plain classes, usable without Ray, wrapped with
``ray.remote(cls).options(...)`` where they are started), ``startup`` (RewardService, Ray start-up),
``throughput`` (the inference benchmark) and ``commands`` (``editrl reward score / serve / bench``).
"""
