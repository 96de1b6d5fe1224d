"""The Ray-served reward pool: ordering, cross-caller batching, back-pressure, fault tolerance, placement.

One Ray session for the module (2 logical CPUs and 2 logical GPUs: GPU counts are bookkeeping only, so
placement can be tested on a CPU machine; no replica touches CUDA). Most tests use ``FakeScorer``, a
deterministic stand-in with the scorer's API and a per-call delay that keeps batches in flight long
enough to merge callers, fill the queue and kill replicas mid-batch; one test serves the real
``RewardScorer`` on the tiny model and checks it against in-process scoring.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid

import pytest

pytestmark = pytest.mark.ray

ray = pytest.importorskip("ray")

from reward.serve.client import RewardClient, make_reward_client  # noqa: E402
from reward.serve.scorer import EditInput, ScoredEdit  # noqa: E402
from reward.serve.config import ScorerSpec, ServiceConfig  # noqa: E402
from reward.serve.startup import RewardService, init_local_ray, node_ip_address  # noqa: E402


class FakeScorer:
    """Deterministic scorer with the RewardScorer API: score = f(instruction, edited); ``edited < 0`` is bad input.

    Like a real batched model, one bad item makes the whole batched call raise; the replica must isolate it.
    """

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    @staticmethod
    def expected(instruction: str, edited: int) -> float:
        return float(sum(map(ord, instruction)) % 97) + edited / 1000.0

    def _one(self, instruction: str, edited: int) -> ScoredEdit:
        from reward.serve.scorer import ScoredEdit  # imported on first use: replicas that only start skip torch

        if not isinstance(edited, int) or edited < 0:
            raise ValueError(f"bad edited image {edited!r}")
        s = self.expected(instruction, edited)
        return ScoredEdit(mu={"instruction_following": s, "visual_quality": -s},
                          sigma={"instruction_following": 1.0, "visual_quality": 1.0}, score=s, score_sigma=1.0,
                          error=None)

    def score(self, items: list[EditInput]) -> list[ScoredEdit]:
        time.sleep(self.delay_s)
        return [self._one(it.instruction, it.edited) for it in items]

    def score_groups(self, groups: list) -> list[list[ScoredEdit]]:
        time.sleep(self.delay_s)
        return [[self._one(instruction, e) for e in edited] for _, instruction, edited in groups]


def fake_spec(delay_s: float) -> ScorerSpec:
    return ScorerSpec(factory=FakeScorer, kwargs={"delay_s": delay_s})


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # replicas get FakeScorer by value
    # conftest hides CUDA (CUDA_VISIBLE_DEVICES=""), and Ray refuses logical GPUs that the variable hides;
    # without it Ray sets the variable per actor, and the replicas here run on device "cpu" regardless.
    hidden = os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    cluster_switch = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    init_local_ray(num_cpus=2, num_gpus=2, namespace="editrl-test")  # loopback only, no dashboard
    yield
    ray.shutdown()
    if cluster_switch is None:
        os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    if hidden is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = hidden


def start(delay_s: float = 0.05, **cfg) -> RewardService:
    defaults = dict(name=f"reward-{uuid.uuid4().hex[:6]}", namespace="editrl-test", replicas=1, num_cpus=0.25,
                    num_gpus=0.0, placement_timeout_s=30, restart_timeout_s=20)
    return RewardService.start(fake_spec(delay_s), ServiceConfig(**{**defaults, **cfg}))


def run_threads(fns) -> list:
    out = [None] * len(fns)

    def call(i, fn):
        out[i] = fn()

    threads = [threading.Thread(target=call, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return out


def test_callers_get_results_in_order_batches_merge_callers_bad_items_error_alone():
    svc = start(delay_s=0.2, replicas=1, max_wait_ms=50, max_batch_edits=64)
    try:
        client = RewardClient.connect(svc.cfg.name, namespace="editrl-test")  # found by name, like other processes
        calls = [[EditInput(source=0, instruction=f"caller {c} item {i}", edited=c * 10 + i) for i in range(5)]
                 for c in range(6)]
        answers = run_threads([lambda items=items: client.score(items) for items in calls])
        for items, scored in zip(calls, answers):
            assert [s.score for s in scored] == pytest.approx([FakeScorer.expected(x.instruction, x.edited) for x in items])
            assert all(s.error is None for s in scored)
        stats = svc.stats()
        assert stats["requests_per_batch_max"] >= 2, stats  # one replica call served several callers
        assert stats["batches"] < len(calls)
        assert stats["units_answered"] == 30 and stats["duplicate_answers_dropped"] == 0
        # groups travel as units; one result list per group, candidates in order
        groups = [(0, "recolour the circle", [3, 1, 2]), (0, "remove the star", [5])]
        got = client.score_groups(groups)
        assert [len(g) for g in got] == [3, 1]
        assert [s.score for g in got for s in g] == pytest.approx(
            [FakeScorer.expected(ins, e) for _, ins, ed in groups for e in ed])
        items = [EditInput(0, "ok one", 1), EditInput(0, "bad", -5), EditInput(0, "ok two", 2),
                 EditInput(0, "missing file", "/nonexistent/edited.png")]
        scored = client.score(items)
        assert scored[0].error is None and scored[2].error is None
        assert scored[0].score == pytest.approx(FakeScorer.expected("ok one", 1))
        assert "bad edited image" in scored[1].error
        assert "nonexistent" in scored[3].error
        group = client.score_group(0, "group with a bad candidate", [4, -1, 6])
        assert [g.error is None for g in group] == [True, False, True]

        units = [("edit", EditInput(0, "dedupe", 9))]
        before = svc.stats()["units_answered"]
        first, second = ray.get([svc.dispatcher.submit.remote("same-id", units),
                                 svc.dispatcher.submit.remote("same-id", units)])
        again = ray.get(svc.dispatcher.submit.remote("same-id", units))
        assert first[0].score == second[0].score == again[0].score
        stats = svc.stats()
        assert stats["units_answered"] == before + 1 and stats["duplicate_requests"] == 2
    finally:
        svc.shutdown()


def test_back_pressure_bounds_the_queue_and_blocks_callers_and_metrics_reach_the_sink(tmp_path):
    svc = start(delay_s=0.5, max_queue_edits=3, max_batch_edits=2, max_wait_ms=0, metrics_dir=str(tmp_path),
                metrics_interval_s=0.5)
    try:
        refs = [svc.dispatcher.submit.remote(f"bp-{i}", [("edit", EditInput(0, f"bp {i}", i))]) for i in range(12)]
        depths = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            s = svc.stats()
            depths.append(s["queue_depth_edits"])
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            if len(done) == len(refs):
                break
            time.sleep(0.05)
        results = ray.get(refs)
        peaks = svc.stats()  # high-water marks kept by the dispatcher: independent of how often we sampled
        assert max(depths) <= 3 and peaks["queue_depth_edits_max"] <= 3  # never more than the bound queued
        assert peaks["waiting_callers_max"] >= 5  # the rest were held at submit
        assert [r[0].score for r in results] == pytest.approx([FakeScorer.expected(f"bp {i}", i) for i in range(12)])
    finally:
        svc.shutdown()
    from editrl.metrics import read_metrics

    rows = read_metrics(tmp_path / "reward_service_metrics.jsonl")  # periodic rows plus one at shutdown
    assert len(rows) >= 2 and rows[-1]["edits_scored"] == 12 and rows[-1]["batch_edits_max"] == 2
    assert max(r["waiting_callers_max"] for r in rows) >= 5 and max(r["queue_depth_edits_max"] for r in rows) <= 3
    for key in ("queue_wait_s_p50", "preprocess_s_p50", "forward_s_p95", "request_s_p50"):
        assert rows[-1][key] >= 0


def test_killed_replicas_are_replaced_and_every_request_is_answered_exactly_once():
    svc = start(delay_s=0.4, replicas=2, max_batch_edits=4, max_wait_ms=5)
    try:
        client = svc.client(chunk_edits=4)
        calls = [[EditInput(0, f"ft {c}", c * 100 + i) for i in range(8)] for c in range(6)]
        replicas = svc.replicas()
        old_pids = {r["pid"] for r in svc.replica_info}

        def killer():
            deadline = time.monotonic() + 30
            while svc.stats()["busy_replicas"] < 2 and time.monotonic() < deadline:
                time.sleep(0.02)  # kill only once both replicas hold a batch
            ray.kill(replicas[0], no_restart=False)  # Ray restarts this one
            ray.kill(replicas[1])  # gone for good: the dispatcher must re-create it
            return None

        answers = run_threads([lambda items=items: client.score(items) for items in calls] + [killer])[:-1]
        for items, scored in zip(calls, answers):
            assert scored is not None and len(scored) == len(items)
            assert [s.score for s in scored] == pytest.approx([FakeScorer.expected(x.instruction, x.edited) for x in items])
            assert all(s.error is None for s in scored)
        stats = svc.stats()
        assert stats["replica_failures"] >= 2 and stats["units_retried"] >= 1
        assert stats.get("replicas_recreated", 0) >= 1
        assert stats["units_answered"] == 48 and stats["duplicate_answers_dropped"] == 0
        new_pids = {ray.get(r.ping.remote())["pid"] for r in svc.replicas()}
        assert not (new_pids & old_pids)
    finally:
        svc.shutdown()


def test_fractional_gpus_pack_two_replicas_per_gpu_and_overcommit_fails_clearly():
    svc = start(delay_s=0.0, replicas=4, num_gpus=0.5, num_cpus=0.25, placement_strategy="STRICT_PACK")
    try:
        assert node_ip_address() == "127.0.0.1"
        gpu_ids = sorted(g for info in svc.replica_info for g in info["gpu_ids"])
        assert gpu_ids == ["0", "0", "1", "1"]
    finally:
        svc.shutdown()
    with pytest.raises(RuntimeError, match="cannot place 5 reward replicas"):
        start(replicas=5, num_gpus=0.5, num_cpus=0.25, placement_timeout_s=2)


def test_service_with_the_real_tiny_scorer_matches_in_process_scoring(tmp_path):
    torch = pytest.importorskip("torch")
    from PIL import Image

    from reward.model.config import RewardModelConfig
    from reward.model.editreward import build_reward_model, save_checkpoint
    from reward.serve.scorer import RewardScorer

    torch.manual_seed(0)
    model_cfg = RewardModelConfig()
    model, processor = build_reward_model(model_cfg)
    ckpt = save_checkpoint(model, processor, model_cfg, tmp_path / "tiny")
    rng = torch.Generator().manual_seed(1)

    def image():
        return Image.fromarray(torch.randint(0, 256, (32, 32, 3), generator=rng, dtype=torch.uint8).numpy())

    src = image()
    edited = [image() for _ in range(3)]
    items = [EditInput(src, "recolour the red circle to blue", e) for e in edited]
    items.append(EditInput(src, "", edited[0]))  # empty instruction: an error for this item only

    cfg = ServiceConfig(name="reward-real", replicas=1, num_cpus=0.5, num_gpus=0.5,
                        placement_timeout_s=30, image_area=model_cfg.pixel_area)
    svc = RewardService.start(ScorerSpec(checkpoint=str(ckpt), device="cpu"), cfg)
    try:
        client = make_reward_client("ray://reward-real")  # joins the running session, finds the service by name
        served = client.score(items)
        served_group = client.score_groups([(src, "recolour the red circle to blue", edited)])[0]
    finally:
        svc.shutdown()
    local = RewardScorer.from_checkpoint(ckpt, device="cpu")
    expected = local.score(items[:3])
    assert [s.score for s in served[:3]] == pytest.approx([e.score for e in expected], abs=1e-5)
    assert [s.score for s in served_group] == pytest.approx([e.score for e in expected], abs=1e-4)
    assert served[3].error and "instruction" in served[3].error
    assert isinstance(make_reward_client(str(ckpt), device="cpu"), RewardScorer)
