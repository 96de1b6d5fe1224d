"""What every part of ``editrl gpu-check`` shares: the sizes (``FULL`` on a GPU, ``DRY`` for ``--dry-run``), the goals
and anchors, the run's JSON file and the ``Recorder`` that writes each figure into it as it is measured, and the timing
and memory helpers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("reward", "editor", "grpo", "reward-train")

# goals and anchors of issue 22 (anchors: one H100, random weights in the real shapes, bf16, SDPA), by figure prefix
TARGETS: dict[str, tuple[str | None, str | None]] = {
    "official-style": (None, "~4.3 edits/s (batch 1)"),
    "one pass, batch 1": (None, "~8.6 edits/s"),
    "one pass, batched": (">= 26", "~13.5 edits/s at batch 32"),
    "shared prefix, G=8": (">= 35", "~35 edits/s (edited-image suffix alone); moonshot 60"),
    "kontext forward 512": (None, "~10.5 image-steps/s (~80% of bf16 peak)"),
    "kontext forward 1024": (None, "~2.65 image-steps/s"),
    "rollout loop / bare forward": (">= 0.95", None),
    "reward share": ("<= 0.10", None),
}


@dataclass
class Sizes:
    """How big every part is: ``FULL`` (one GPU, the real shapes) or ``DRY`` (CPU, tiny shapes, seconds)."""

    full: bool
    dtype: str
    reward_items: int  # edits each reward style scores (a multiple of 16, or fewer than 16)
    reward_image: int
    reward_batch: int
    group_size: int  # G of the shared-prefix row and of the GRPO groups
    flux: dict[str, Any]  # FluxTransformer2DModel config
    vae: dict[str, Any]  # AutoencoderKL config
    qwen_image: dict[str, Any]  # QwenImageTransformer2DModel config
    step1x: dict[str, Any]  # Step1X-Edit's DiT: FluxTransformer2DModel config (rollout.step1x.convert.dit_config keys)
    step1x_connector: dict[str, Any]  # rollout.step1x.connector.Step1XConnector arguments
    text_tokens: int  # T5 tokens of an instruction (Kontext's max_sequence_length)
    qwen_text_tokens: int
    step1x_text_tokens: int  # Qwen2.5-VL rows of a Step1X-Edit prompt (the release pads or cuts to 640)
    forward_sizes: tuple[tuple[int, int], ...]  # (output side in pixels, batch) of the step-rate rows
    repeats: int  # timed forwards per step-rate row
    loop_steps: int  # denoising steps of the rollout-loop row
    lora_batches: tuple[int, ...]  # micro-batches of the LoRA training rows (each with and without checkpointing)
    lora_repeats: int
    grpo_prompts: int
    grpo_steps: int  # sampling steps of the GRPO iteration
    train_pairs: int  # pairs per reward training step (2 sequences each)
    train_steps: int
    headroom: dict[str, float] = field(default_factory=dict)  # seconds an optional figure needs to be started


FLUX_KONTEXT_12B = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                        num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                        guidance_embeds=True, axes_dims_rope=(16, 56, 56))
FLUX_VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                latent_channels=16, norm_num_groups=32, use_quant_conv=False, use_post_quant_conv=False,
                scaling_factor=0.3611, shift_factor=0.1159)
# Step1X-Edit v1.1 (tests/editrl/test_gpu_check.py checks both against the release's tensor shapes)
STEP1X_DIT = dict(FLUX_KONTEXT_12B, out_channels=64, guidance_embeds=False)
STEP1X_CONNECTOR = dict(dim_in=3584, dim=4096, heads=32, depth=2, mlp_hidden=16384, pooled_dim=768, scale_factor=False)
FULL = Sizes(full=True, dtype="bfloat16", reward_items=32, reward_image=448, reward_batch=32, group_size=8,
             flux=FLUX_KONTEXT_12B, vae=FLUX_VAE, qwen_image={},  # {}: the class defaults are Qwen-Image's 20B
             step1x=STEP1X_DIT, step1x_connector=STEP1X_CONNECTOR,
             text_tokens=512, qwen_text_tokens=300, step1x_text_tokens=640,
             forward_sizes=((512, 4), (1024, 1)), repeats=4, loop_steps=10,
             lora_batches=(1, 4, 8), lora_repeats=2, grpo_prompts=2, grpo_steps=10, train_pairs=2, train_steps=3,
             headroom={"step1x": 30.0, "qwen-image": 45.0, "lora": 25.0, "forward 1024": 10.0})
DRY = Sizes(full=False, dtype="bfloat16", reward_items=4, reward_image=64, reward_batch=8, group_size=8,
            flux=dict(FLUX_KONTEXT_12B, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                      joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 6, 6)),
            vae=dict(FLUX_VAE, down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                     block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4),
            qwen_image=dict(num_layers=1, attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                            axes_dims_rope=(4, 6, 6)),
            step1x=dict(STEP1X_DIT, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                        joint_attention_dim=32, pooled_projection_dim=24, axes_dims_rope=(4, 6, 6)),
            step1x_connector=dict(STEP1X_CONNECTOR, dim_in=24, dim=32, heads=2, mlp_hidden=64, pooled_dim=24),
            text_tokens=16, qwen_text_tokens=16, step1x_text_tokens=16,
            forward_sizes=((32, 2), (64, 1)), repeats=2, loop_steps=3,
            lora_batches=(1, 2), lora_repeats=1, grpo_prompts=2, grpo_steps=2, train_pairs=1, train_steps=1)


# ====================================================================================== the run's JSON
def environment(dry_run: bool) -> dict[str, Any]:
    """Device, versions and commit of this run (the JSON header)."""
    import torch

    cuda = torch.cuda.is_available() and not dry_run
    props = torch.cuda.get_device_properties(0) if cuda else None

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else "unknown"

    return {"gpu_check": 1, "date": date.today().isoformat(), "dry_run": dry_run,
            "device": props.name if props else "cpu", "gpu_memory_gib": round(props.total_memory / 2**30, 1) if props else None,
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
            "git_commit": git("rev-parse", "HEAD"), "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "python": sys.version.split()[0], "parts": {}}


def run_json_path(out: Path, env: dict[str, Any]) -> Path:
    """``<out>/<date>-<device>[-dry-run].json``: one file per day and device (a rerun of a part replaces its entry)."""
    slug = re.sub(r"[^a-z0-9]+", "-", env["device"].lower()).strip("-")
    return out / f"{env['date']}-{slug}{'-dry-run' if env['dry_run'] else ''}.json"


def write_run(path: Path, data: dict[str, Any]) -> None:
    """Replace the run file atomically (a part killed mid-write leaves the previous version)."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def read_run(path: Path) -> dict[str, Any]:
    """A run file's content; a clear error when ``path`` is not one."""
    from editrl.io import DataError

    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(path, f"not a readable gpu-check run file: {err}") from None
    if not isinstance(data, dict) or data.get("gpu_check") != 1:
        raise DataError(path, "not a gpu-check run file", field="gpu_check")
    return data


class Recorder:
    """One part's figures: printed and written to the run's JSON as each is measured."""

    def __init__(self, path: Path, part: str, budget_s: float | None = None) -> None:
        self.path, self.part = path, part
        self.t0 = time.monotonic()
        self.budget_s = budget_s
        def start(entry: dict[str, Any]) -> None:  # a rerun of the part replaces its figures
            entry.clear()
            entry.update(status="running", figures=[], info={})

        self._update(start)

    def _update(self, change: Callable[[dict[str, Any]], Any]) -> None:
        data = read_run(self.path)
        change(data["parts"].setdefault(self.part, {}))
        write_run(self.path, data)

    def left(self) -> float:
        """Seconds left of this part's budget (infinite without one)."""
        return float("inf") if self.budget_s is None else self.budget_s - (time.monotonic() - self.t0)

    def figure(self, name: str, value: float | None, unit: str, *, memory_gib: float | None = None,
               note: str | None = None, **extra: Any) -> None:
        """Record one measured figure (``value`` None: a note, e.g. what did not fit)."""
        goal, anchor = next((t for prefix, t in TARGETS.items() if name.startswith(prefix)), (None, None))
        fig = {"name": name, "value": None if value is None else round(float(value), 4), "unit": unit,
               "memory_gib": None if memory_gib is None else round(memory_gib, 2), "goal": goal, "anchor": anchor,
               "met": goal_met(goal, value), "note": note, **extra}
        text = note if value is None else f"{value:.4g} {unit}".rstrip()
        mem = f", peak {memory_gib:.1f} GiB" if memory_gib is not None else ""
        print(f"[{self.part}] {name}: {text}{mem}" + (f"  (goal {goal})" if goal else ""), flush=True)
        self._update(lambda entry: entry["figures"].append(fig))

    def info(self, **values: Any) -> None:
        """Context of the part's figures (model, token counts, sizes)."""
        self._update(lambda entry: entry["info"].update(values))

    def finish(self, status: str) -> None:
        """The part's final status ("done" or why it failed) and its seconds."""
        elapsed = round(time.monotonic() - self.t0, 1)
        self._update(lambda entry: entry.update(status=status, seconds=elapsed))


def goal_met(goal: str | None, value: float | None) -> bool | None:
    """Whether ``value`` meets a goal written ``">= X"`` or ``"<= X"`` (None without a goal or a value)."""
    if goal is None or value is None:
        return None
    op, _, bound = goal.partition(" ")
    return value >= float(bound) if op == ">=" else value <= float(bound)


# ====================================================================================== measuring helpers
def sync(device: str) -> None:
    """Wait for the device's queued work (timings of CUDA work need it)."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str, repeats: int = 1) -> tuple[Any, float]:
    """``(last result, mean seconds)`` of ``repeats`` calls, synchronised."""
    sync(device)
    t0 = time.perf_counter()
    out = None
    for _ in range(repeats):
        out = fn()
    sync(device)
    return out, (time.perf_counter() - t0) / repeats


def peak_gib(device: str, reset: bool = True) -> float | None:
    """Peak ``torch.cuda.max_memory_allocated`` since the last reset, in GiB (None on CPU); resets it."""
    import torch

    if not str(device).startswith("cuda"):
        return None
    peak = torch.cuda.max_memory_allocated() / 2**30
    if reset:
        torch.cuda.reset_peak_memory_stats()
    return peak


def is_oom(err: BaseException) -> bool:
    """An allocation failure (CUDA out of memory), which a part records as "does not fit" and survives."""
    import torch

    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()
