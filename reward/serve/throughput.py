# long: one benchmark whose rows (official style, ours, served) score the same edits and print side by side
"""Reward-inference benchmark: the official inference style against ours, on the same model and the same edits.

Rows, all scoring the same N edits (N/16 sources, 16 candidate edits each):

1. ``official-style``: one full forward per dimension, batch size 1 (the official EditReward inference);
2. ``one pass, batch 1``: both dimensions from one forward, batch size 1;
3. ``one pass, batched``: both dimensions from one forward, batches of ``batch_size`` (what a replica does
   with a dynamically formed batch);
4. ``shared prefix, G=4/8/16``: candidates grouped by source and instruction; the prefix (prompt, source
   image, instruction) is encoded once per group and its key/value cache reused per candidate;
5. ``official mode, per edit``: the released EditReward's exact inference (``inference: official``: base chat
   template, one pass per rubric, 1-D positions), one edit per call, as its own code runs it;
6. ``official mode, batched``: the same numbers, ``batch_size`` edits and both passes in one forward;
7. ``official mode, shared prefix, G=...``: the same numbers over one cached prefix (system turn + source image)
   per group, each edited image encoded once for both passes.

Rows 1-4 use editrl's native format, rows 5-7 the official one, on the same weights (rows 5-7 need one head per
dimension; a checkpoint imported with ``editrl reward import-official`` runs all rows). Every row includes input
processing (image resize, tokenisation), as a served request would, and is timed ``repeats`` times after a
warm-up call (edits/s at the median time; the fastest beside it; the Ray rows once). The result also reports how far each row's
scores are from its mode's first row (they compute the same thing) and, with both modes, how far the native
format's scores are from the official ones (``native_vs_official``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

QWEN25_VL_7B_TEXT = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                         num_key_value_heads=4, max_position_embeddings=128000, rms_norm_eps=1e-6, vocab_size=152064,
                         rope_theta=1_000_000.0, mrope_section=[16, 24, 24])
QWEN25_VL_7B_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[7, 15, 23, 31])


@dataclass
class BenchResult:
    """Throughput of each inference style on one model and one set of edits."""

    device: str
    model: str
    items: int
    tokens_per_edit: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    native_vs_official: dict[str, float] | None = None  # rank_agreement of the two modes' reference rows

    def to_dict(self) -> dict[str, Any]:
        rows = [{k: v for k, v in row.items() if not k.startswith("_")} for row in self.rows]
        out = {"device": self.device, "model": self.model, "items": self.items,
               "tokens_per_edit": self.tokens_per_edit, "rows": rows}
        if self.native_vs_official is not None:
            out["native_vs_official"] = self.native_vs_official
        return out


# ---- the model under test ---------------------------------------------------------------------------
def qwen25_vl_7b_config(processor: Any) -> Any:
    """A ``Qwen2_5_VLConfig`` with the dimensions of Qwen2.5-VL-7B, wired to ``processor``'s special tokens."""
    from transformers import Qwen2_5_VLConfig

    t = dict(QWEN25_VL_7B_TEXT)
    tok = processor.tokenizer
    ids = {name: tok.convert_tokens_to_ids(token) for name, token in
           [("image", "<|image_pad|>"), ("video", "<|video_pad|>"), ("vstart", "<|vision_start|>"),
            ("vend", "<|vision_end|>"), ("eos", "<|endoftext|>"), ("im_end", "<|im_end|>")]}
    if len(tok) > t["vocab_size"]:
        raise ValueError(f"tokenizer has {len(tok)} tokens, more than the 7B vocabulary {t['vocab_size']}")
    text_config = dict(
        vocab_size=t["vocab_size"], hidden_size=t["hidden_size"], intermediate_size=t["intermediate_size"],
        num_hidden_layers=t["num_hidden_layers"], num_attention_heads=t["num_attention_heads"],
        num_key_value_heads=t["num_key_value_heads"], max_position_embeddings=t["max_position_embeddings"],
        rms_norm_eps=t["rms_norm_eps"],
        rope_parameters={"rope_type": "default", "rope_theta": t["rope_theta"], "mrope_section": t["mrope_section"]},
        bos_token_id=ids["eos"], eos_token_id=ids["im_end"], pad_token_id=ids["eos"], use_cache=True,
    )
    return Qwen2_5_VLConfig(text_config=text_config, vision_config=dict(QWEN25_VL_7B_VISION),
                            image_token_id=ids["image"], video_token_id=ids["video"],
                            vision_start_token_id=ids["vstart"], vision_end_token_id=ids["vend"])


def full_shapes_model_config() -> Any:
    """Reward-model settings of a real 7B run: 448x448 images, the appendix A.9 rubric, bf16, official head widths."""
    from reward.model.config import RewardModelConfig

    return RewardModelConfig(pixel_area=448 * 448, prompt="rubric", dtype="bfloat16", head_width=1024,
                             head_bottleneck=16, attn_implementation="sdpa")


def build_bench_scorer(checkpoint: str | None = None, *, device: str = "cpu", full_shapes: bool = False,
                       batch_size: int = 32) -> tuple[Any, str]:
    """The scorer to benchmark and a label: a checkpoint, the tiny model (random weights), or a 7B-shaped one."""
    from reward.serve.scorer import RewardScorer

    if checkpoint:
        return RewardScorer.from_checkpoint(checkpoint, device=device, batch_size=batch_size), f"checkpoint {checkpoint}"
    if not full_shapes:
        from reward.model.config import RewardModelConfig
        from reward.model.editreward import build_reward_model

        cfg = RewardModelConfig()
        model, processor = build_reward_model(cfg)
        return RewardScorer(model, processor, cfg, batch_size=batch_size, device=device), "tiny Qwen2.5-VL (random weights)"
    cfg = full_shapes_model_config()
    model, processor = build_full_shapes_model(device, cfg)
    return RewardScorer(model, processor, cfg, batch_size=batch_size, device=device), "Qwen2.5-VL-7B shapes (random weights, bf16)"


def build_full_shapes_model(device: str, cfg: Any = None) -> tuple[Any, Any]:
    """A Qwen2.5-VL-7B-shaped ``EditRewardModel`` (seeded random weights, bf16) and its processor, built on
    ``device``; ``cfg`` (default ``full_shapes_model_config()``) sets the input format and the training options
    (gradient checkpointing, LoRA, frozen vision) the model applies."""
    import torch
    from transformers import Qwen2_5_VLModel

    from reward.model.backbone import build_tiny_processor, ensure_reward_token
    from reward.model.editreward import EditRewardModel

    cfg = cfg or full_shapes_model_config()
    processor = build_tiny_processor(None, cfg)
    reward_id = ensure_reward_token(processor, cfg.reward_token)
    config = qwen25_vl_7b_config(processor)
    config._attn_implementation = cfg.attn_implementation
    default_dtype = torch.get_default_dtype()
    torch.manual_seed(0)  # the same random weights in every process (service replicas rebuild the model)
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            backbone = Qwen2_5_VLModel(config)
    finally:
        torch.set_default_dtype(default_dtype)
    return EditRewardModel(backbone, cfg, reward_id), processor


def bench_inputs(items: int, image_size: int, seed: int = 0) -> list[tuple[Any, str, list[Any]]]:
    """``items`` edits as groups of 16 candidates (random-noise images; inference cost does not depend on content)."""
    import numpy as np
    from PIL import Image

    if items % 16:
        raise ValueError(f"--items must be a multiple of 16, got {items}")
    rng = np.random.default_rng(seed)

    def image() -> Any:
        return Image.fromarray(rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8))

    colours = ["red", "green", "blue", "yellow", "purple", "orange"]
    return [(image(), f"recolour the {colours[g % 6]} circle to {colours[(g + 1) % 6]}", [image() for _ in range(16)])
            for g in range(items // 16)]


# ---- the styles ---------------------------------------------------------------------------------------
def _singles(groups: list) -> list[Any]:
    from reward.serve.scorer import EditInput

    return [EditInput(src, ins, e) for src, ins, edited in groups for e in edited]


def _regroup(groups: list, size: int) -> list:
    return [(src, ins, edited[i:i + size]) for src, ins, edited in groups for i in range(0, len(edited), size)]


def _per_item(scorer: Any, items: list, official: bool) -> list[float]:
    import torch

    scores = []
    for item in items:
        batch = scorer.builder([item.source], [item.instruction], [item.edited]).to(scorer.device)
        with torch.inference_mode():
            out = (scorer.model.forward_official_style if official else scorer.model)(**batch)
        scores += [s.score for s in scorer._to_scored(out.mu, out.log_sigma)]
    return scores


def _official_per_item(scorer: Any, items: list) -> list[float]:
    """The official schedule: one edit per call, one full pass (vision tower included) per dimension."""
    import torch

    from reward.official.inference import official_forward

    scores = []
    for item in items:
        batch = scorer.builder([item.source], [item.instruction], [item.edited]).to(scorer.device)
        with torch.inference_mode():
            mu, log_sigma = official_forward(scorer.model, **batch, fuse_passes=False)
        scores += [s.score for s in scorer._to_scored(mu, log_sigma)]
    return scores


def mode_view(scorer: Any, mode: str) -> Any | None:
    """``scorer`` reading inputs of inference mode ``mode`` ("native" / "official") with the same weights, or None
    when the model cannot (official mode needs one head per dimension and two dimensions)."""
    import dataclasses

    from reward.serve.scorer import RewardScorer

    if scorer.cfg.inference == mode:
        return scorer
    try:
        cfg = dataclasses.replace(scorer.cfg, inference=mode)
    except ValueError:
        return None
    processor = scorer.processor
    if mode == "official":
        from reward.official.inference import official_processor

        processor = official_processor(processor)
    return RewardScorer(scorer.model, processor, cfg, batch_size=scorer.batch_size, device=scorer.device)


def bench_styles(scorer: Any, group_sizes: tuple[int, ...] = (4, 8, 16)) -> list[tuple[str, str, Any]]:
    """Every style ``run_bench`` can time on ``scorer``'s model, as (name, mode, fn(items, groups) -> scores):
    native rows (editrl's format), then official-mode rows (the released EditReward's exact inference) when the
    model has its two heads. The first row of each mode is that mode's reference for the score differences."""
    styles: list[tuple[str, str, Any]] = []
    native, official = mode_view(scorer, "native"), mode_view(scorer, "official")
    if native is not None:
        styles += [
            ("official-style (2 forwards/edit, batch 1)", "native", lambda its, gs: _per_item(native, its, official=True)),
            ("one pass, batch 1", "native", lambda its, gs: _per_item(native, its, official=False)),
            (f"one pass, batched ({native.batch_size})", "native", lambda its, gs: [s.score for s in native.score(its)]),
        ]
        styles += [(f"shared prefix, G={g}", "native",
                    lambda its, gs, g=g: [s.score for grp in native.score_groups(_regroup(gs, g)) for s in grp])
                   for g in group_sizes]
    if official is not None:
        styles += [
            ("official mode, per edit (2 passes, batch 1)", "official", lambda its, gs: _official_per_item(official, its)),
            (f"official mode, batched ({official.batch_size})", "official",
             lambda its, gs: [s.score for s in official.score(its)]),
        ]
        styles += [(f"official mode, shared prefix, G={g}", "official",
                    lambda its, gs, g=g: [s.score for grp in official.score_groups(_regroup(gs, g)) for s in grp])
                   for g in group_sizes]
    return styles


def _timed(fn: Any, device: str) -> tuple[Any, float]:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def _tokens_per_edit(scorer: Any, item: Any) -> int:
    """Tokens one edit costs in ``scorer``'s mode (official: summed over its passes)."""
    batch = scorer.builder([item.source], [item.instruction], [item.edited])
    return int(batch["attention_mask"].sum())


def rank_agreement(a: list[float], b: list[float], groups: list) -> dict[str, float]:
    """How far two score lists over the same grouped edits agree: max |diff|, Spearman over all edits, and the
    share of within-group candidate pairs both put in the same order."""
    from scipy.stats import spearmanr

    same = total = 0
    offset = 0
    for _, _, edited in groups:
        n = len(edited)
        for i in range(offset, offset + n):
            for j in range(i + 1, offset + n):
                total += 1
                same += (a[i] - a[j]) * (b[i] - b[j]) > 0
        offset += n
    rho = float(spearmanr(a, b).statistic) if len(a) > 1 else float("nan")
    return {"max_abs_diff": max(abs(x - y) for x, y in zip(a, b)), "spearman": rho,
            "pair_order_agreement": same / total if total else float("nan"), "pairs": total}


def run_bench(scorer: Any, groups: list, *, group_sizes: tuple[int, ...] = (4, 8, 16), label: str = "",
              device: str = "cpu", progress: bool = True,
              on_row: Callable[[dict[str, Any]], None] | None = None, styles: Sequence[str] | None = None,
              repeats: int = 3) -> BenchResult:
    """Time every style (``bench_styles``; ``styles``: only those names) on the same edits, after a warm-up call,
    ``repeats`` times; returns edits/s at the median time (and at the fastest: ``edits_per_s_best``), the
    ratio to the first row of its mode, and each row's max score difference to that row
    (``max_abs_diff_vs_official``: native rows against official-style, official-mode rows against the official
    per-edit row). With both modes, ``native_vs_official`` says how far editrl's native format is from the
    official scores on these weights. ``on_row(row)`` is called as each row is measured (``editrl.gpu_check``)."""
    items = _singles(groups)
    available = bench_styles(scorer, group_sizes)
    chosen = available if styles is None else [s for s in available if s[0] in styles]
    if styles is not None and len(chosen) != len(set(styles)):
        unknown = sorted(set(styles) - {s[0] for s in available})
        raise ValueError(f"unknown bench styles {unknown}; this model has {[s[0] for s in available]}")
    first_view = mode_view(scorer, chosen[0][1]) if chosen else scorer
    result = BenchResult(device=device, model=label, items=len(items),
                         tokens_per_edit=_tokens_per_edit(first_view, items[0]))
    warm_groups = [(groups[0][0], groups[0][1], groups[0][2][:2])]
    reference: dict[str, list[float]] = {}
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for name, mode, fn in chosen:
        fn(_singles(warm_groups), warm_groups)  # warm-up: kernels, allocator, caches
        timed = [_timed(lambda: fn(items, groups), device) for _ in range(repeats)]
        scores, times = timed[0][0], sorted(t for _, t in timed)
        seconds = float(statistics.median(times))
        rate = len(items) / seconds
        row = {"style": name, "mode": mode, "seconds": round(seconds, 4), "seconds_min": round(times[0], 4),
               "repeats": repeats, "edits_per_s": round(rate, 3), "edits_per_s_best": round(len(items) / times[0], 3)}
        if mode not in reference:
            reference[mode] = scores
            row["_scores"] = scores  # kept for later rows (service); dropped from the output
            row["tokens_per_edit"] = _tokens_per_edit(mode_view(scorer, mode), items[0])
        row["max_abs_diff_vs_official"] = max(abs(a - b) for a, b in zip(scores, reference[mode]))
        result.rows.append(row)
        if progress:
            print(f"  {name}: {rate:.2f} edits/s (median of {repeats}; best {row['edits_per_s_best']:.2f})",
                  flush=True)
        if on_row is not None:
            on_row(row)
    base: dict[str, float] = {}
    for row in result.rows:  # against the first row of the same mode: its one-edit-per-call official schedule
        base.setdefault(row["mode"], row["edits_per_s"])
        row["ratio_to_official"] = round(row["edits_per_s"] / base[row["mode"]], 3)
    if len(reference) == 2:
        result.native_vs_official = rank_agreement(reference["native"], reference["official"], groups)
    return result


def bench_scorer_factory(**kwargs: Any) -> Any:
    """Replica-side builder for the service rows: the same (seeded) model as ``build_bench_scorer``."""
    return build_bench_scorer(**kwargs)[0]


def run_service_rows(result: BenchResult, groups: list, *, scorer_kwargs: dict[str, Any], replicas: int,
                     num_gpus: float, callers: int, group_size: int, batch_size: int, progress: bool = True,
                     mode: str = "native") -> None:
    """Add rows measured end to end through a local Ray ``RewardService``: many small concurrent callers
    (4 edits, or one group, per call) merged by the dispatcher's dynamic batching. ``mode``: the inference mode
    the served checkpoint runs in (its rows are compared with that mode's first row)."""
    from concurrent.futures import ThreadPoolExecutor

    from reward.serve.config import ScorerSpec, ServiceConfig
    from reward.serve.startup import RewardService, init_local_ray

    init_local_ray()
    cfg = ServiceConfig(name="editrl-reward-bench", replicas=replicas, num_gpus=num_gpus, num_cpus=1.0,
                        max_batch_edits=batch_size, max_wait_ms=2.0)
    service = RewardService.start(ScorerSpec(factory=bench_scorer_factory, kwargs=scorer_kwargs), cfg)
    try:
        client = service.client(chunk_edits=4)
        items = _singles(groups)
        client.score(items[:2])  # warm-up
        reference = next((r["_scores"] for r in result.rows if r.get("mode") == mode and "_scores" in r), None)
        chunks = [items[i:i + 4] for i in range(0, len(items), 4)]
        grouped = _regroup(groups, group_size)
        runs = [(f"Ray service, {callers} callers x 4 edits, dynamic batching",
                 lambda pool: [s.score for out in pool.map(client.score, chunks) for s in out]),
                (f"Ray service, {callers} callers x 1 group, shared prefix G={group_size}",
                 lambda pool: [s.score for out in pool.map(lambda g: client.score_groups([g])[0], grouped) for s in out])]
        for name, fn in runs:
            before = service.stats()
            with ThreadPoolExecutor(callers) as pool:
                scores, seconds = _timed(lambda: fn(pool), result.device)
            after = service.stats()
            batches = max(after["batches"] - before["batches"], 1)
            row = {"style": name, "mode": mode, "seconds": round(seconds, 4), "edits_per_s": round(len(items) / seconds, 3),
                   "mean_batch_edits": round((after["edits_scored"] - before["edits_scored"]) / batches, 2)}
            if reference is not None:
                row["max_abs_diff_vs_official"] = max(abs(a - b) for a, b in zip(scores, reference))
            result.rows.append(row)
            if progress:
                print(f"  {name}: {row['edits_per_s']:.2f} edits/s", flush=True)
    finally:
        service.shutdown()
    base: dict[str, float] = {}
    for row in result.rows:
        base.setdefault(row["mode"], row["edits_per_s"])
        row["ratio_to_official"] = round(row["edits_per_s"] / base[row["mode"]], 3)


def print_result(result: BenchResult) -> None:
    """A rich table of the benchmark rows."""
    from rich.table import Table

    from editrl.report import console

    repeats = result.rows[0].get("repeats", 1) if result.rows else 1
    table = Table(title=f"reward inference: {result.model} on {result.device}, {result.items} edits, "
                        f"{result.tokens_per_edit} tokens/edit, timed after a warm-up")
    for col in ("style", f"edits/s (median of {repeats})", "edits/s (best)", "x official", "max |score diff|"):
        table.add_column(col, justify="left" if col == "style" else "right")
    for row in result.rows:
        diff = row.get("max_abs_diff_vs_official")
        best = row.get("edits_per_s_best")
        table.add_row(row["style"], f"{row['edits_per_s']:.2f}", "-" if best is None else f"{best:.2f}",
                      f"{row['ratio_to_official']:.2f}", "-" if diff is None else f"{diff:.2e}")
    out = console()
    out.print(table)
    agree = result.native_vs_official
    if agree is not None:
        out.print(f"native format vs official scores on these weights: max |diff| {agree['max_abs_diff']:.3g}, "
                  f"Spearman {agree['spearman']:.3f}, same order in {agree['pair_order_agreement']:.1%} of "
                  f"{agree['pairs']} within-group pairs")
