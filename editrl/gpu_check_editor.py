"""The editor and RL parts of ``editrl gpu-check`` (``editrl.gpu_check``): FLUX.1-Kontext-, Step1X-Edit- and
Qwen-Image-shaped transformers with random weights, built on the meta device and materialised on the GPU in bf16.

The Kontext editor is the real ``rollout.flux_kontext.FluxKontextEditor`` over a real ``FluxKontextPipeline``
(transformer, VAE and scheduler at the 12B model's shapes); only the text encoders are left out: its
``encode_prompt`` returns seeded random T5 / CLIP embeddings of the real shapes (512 T5 tokens of 4096, a pooled 768),
because a prompt is encoded once per prompt and step, which none of these figures is about.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from editrl.gpu_check_common import ROOT, Recorder, Sizes, is_oom, peak_gib, timed

# dense bf16 peak FLOP/s by device-name fragment, for the share-of-peak column
BF16_PEAK = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12, "B200": 2250e12, "L40S": 362e12}


def materialise(build: Callable[[], Any], device: str, dtype: Any, seed: int = 0) -> Any:
    """``build()`` on the meta device (no memory, no init), allocated on ``device`` in ``dtype`` and filled with seeded
    random weights (normal(0, 0.02) matrices, unit norm scales, zero biases); rotary tables are rebuilt there."""
    import torch

    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("meta"):
            module = build()
    finally:
        torch.set_default_dtype(default)
    module.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.02, generator=gen)
            else:
                p.fill_(1.0 if "norm" in name and name.endswith("weight") else 0.0)
    for name, sub in list(module.named_modules()):
        if any(isinstance(v, torch.Tensor) and v.is_meta for v in vars(sub).values()):
            if not hasattr(sub, "axes_dim"):  # only rotary tables are plain (non-buffer) tensors here
                raise RuntimeError(f"{type(module).__name__}.{name}: a tensor attribute stayed on the meta device")
            parent = module.get_submodule(name.rpartition(".")[0]) if "." in name else module
            with torch.device(device):
                setattr(parent, name.rpartition(".")[2], type(sub)(theta=sub.theta, axes_dim=sub.axes_dim,
                                                                    scale_rope=sub.scale_rope))
    return module.eval()


def kontext_editor(sz: Sizes, device: str, resolution: int) -> Any:
    """A ``FluxKontextEditor`` with a 12B-shaped transformer and the FLUX VAE (random weights; see the docstring)."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxTransformer2DModel

    from rollout.flux_kontext import FluxKontextEditor

    class ShapedTextKontextPipeline(FluxKontextPipeline):
        def encode_prompt(self, prompt: Any, prompt_2: Any = None, device: Any = None, max_sequence_length: int = 512,
                          **_: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            n, cfg, dtype = len(prompt) if isinstance(prompt, list) else 1, self.transformer.config, self.transformer.dtype
            gen = torch.Generator(device=device).manual_seed(0)
            embeds = torch.randn((n, max_sequence_length, cfg.joint_attention_dim), generator=gen, device=device)
            pooled = torch.randn((n, cfg.pooled_projection_dim), generator=gen, device=device)
            return embeds.to(dtype), pooled.to(dtype), torch.zeros(max_sequence_length, 3, device=device, dtype=dtype)

    dtype = getattr(torch, sz.dtype)
    transformer = materialise(lambda: FluxTransformer2DModel(**sz.flux), device, dtype)
    vae = materialise(lambda: AutoencoderKL(**sz.vae), device, dtype, seed=1)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = ShapedTextKontextPipeline(scheduler=scheduler, vae=vae, text_encoder=None, tokenizer=None,
                                     text_encoder_2=None, tokenizer_2=None, transformer=transformer)
    return FluxKontextEditor(pipe, resolution=resolution, max_sequence_length=sz.text_tokens)


def _source(side: int) -> Any:
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8))


def _flops_per_image_step(params: int, layers: int, hidden: int, tokens: int) -> float:
    """Matmul FLOPs of one forward of one image: 2 * params * tokens, plus attention's 4 * layers * tokens^2 * hidden."""
    return 2.0 * params * tokens + 4.0 * layers * tokens**2 * hidden


def _peak_share(rate: float, flops: float) -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    peak = next((v for k, v in BF16_PEAK.items() if k in name), None)
    return None if peak is None else round(rate * flops / peak, 3)


# ====================================================================================== 2. editor
def part_editor(rec: Recorder, sz: Sizes, device: str) -> None:
    """Kontext-shaped step rates, SDE/loop overhead against a bare forward, LoRA steps; then Step1X-Edit- and
    Qwen-Image-shaped rates, each only when its headroom of the part's budget is left.

    The bare forward is ``editor.velocity``: one transformer call on the noisy and source latents, what the rollout
    loop calls once per step."""
    import torch

    from rollout.adapters import attach_adapter
    from rollout.sde import sde_step_with_logprob

    side, batch = sz.forward_sizes[0]
    editor, built = timed(lambda: kontext_editor(sz, device, side), device)
    tf = editor.transformer
    n_params = sum(p.numel() for p in tf.parameters())
    rec.figure("kontext build (meta -> device, random init)", built, "s", memory_gib=peak_gib(device),
               parameters=n_params)
    layers = sz.flux["num_layers"] + sz.flux["num_single_layers"]
    hidden = tf.config.num_attention_heads * tf.config.attention_head_dim
    gen = torch.Generator(device=device).manual_seed(0)
    conds: dict[int, Any] = {}
    bare: dict[int, float] = {}
    for s, b in sz.forward_sizes:
        if s != side and rec.left() < sz.headroom.get(f"forward {s}", 0):
            rec.figure(f"kontext forward {s}", None, "", note="skipped: part budget")
            continue
        editor.resolution = s
        cond = editor.prepare([_source(s)] * b, ["recolour the red circle to blue"] * b)
        conds[s] = cond
        x = editor.initial_latents(cond, gen)
        with torch.inference_mode():
            editor.velocity(x, 0.5, cond)  # warm-up
            _, sec = timed(lambda: editor.velocity(x, 0.5, cond), device, sz.repeats)
        bare[s] = sec
        tokens = sz.text_tokens + x.shape[1] + cond.image_latents.shape[1]
        rate = b / sec
        rec.figure(f"kontext forward {s}", rate, "image-steps/s", memory_gib=peak_gib(device), batch=b, tokens=tokens,
                   bf16_peak_share=_peak_share(rate, _flops_per_image_step(n_params, layers, hidden, tokens)))
    editor.resolution = side
    cond = conds[side]
    x = editor.initial_latents(cond, gen).float()
    v = torch.randn_like(x)
    sigmas = editor.sigmas(sz.loop_steps, cond)
    _, sde = timed(lambda: sde_step_with_logprob(v, x, sigmas[1], sigmas[2], 0.7, generator=gen), device, sz.repeats)
    rec.figure("SDE step with log-prob / forward time", sde / bare[side], "x", batch=batch, sde_step_s=round(sde, 5))
    with torch.inference_mode():
        editor.sample(cond, sz.loop_steps, noise_level=0.7, generator=gen, output_type="pt")  # warm-up
        _, decode = timed(lambda: editor.decode(x, cond, output_type="pt"), device)
        _, loop = timed(lambda: editor.sample(cond, sz.loop_steps, noise_level=0.7, generator=gen,
                                              return_trajectory=True, output_type="pt"), device)
    ideal = sz.loop_steps * bare[side]
    rec.figure("rollout loop / bare forward (VAE decode excluded)", ideal / (loop - decode), "x",
               memory_gib=peak_gib(device), loop_s=round(loop, 3), decode_s=round(decode, 3), steps=sz.loop_steps,
               batch=batch, with_decode=round(ideal / loop, 3))

    # ---- LoRA training steps: flow-matching loss, AdamW on the adapter, with and without gradient checkpointing
    named = attach_adapter(editor, rank=32, alpha=64, seed=0)
    optimizer = torch.optim.AdamW([p for _, p in named], lr=1e-4)
    tf.train()
    for b in sz.lora_batches:
        for checkpointing in (False, True):
            label = f"LoRA r 32 train step {side}, batch {b}" + (", gradient checkpointing" if checkpointing else "")
            if rec.left() < sz.headroom.get("lora", 0):
                rec.figure(label, None, "", note="skipped: part budget")
                continue
            (tf.enable_gradient_checkpointing if checkpointing else tf.disable_gradient_checkpointing)()
            c = cond.index([i % cond.batch_size for i in range(b)])
            x0 = torch.randn((b, *x.shape[1:]), generator=gen, device=device)
            noise = torch.randn_like(x0)

            def step() -> None:
                pred = editor.velocity(0.5 * x0 + 0.5 * noise, 0.5, c)
                torch.nn.functional.mse_loss(pred.float(), noise - x0).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            try:
                step()
                _, sec = timed(step, device, sz.lora_repeats)
                rec.figure(label, sec, "s/step", memory_gib=peak_gib(device), images_per_s=round(b / sec, 3))
            except Exception as err:
                if not is_oom(err):
                    raise
                optimizer.zero_grad(set_to_none=True)
                rec.figure(label, None, "", memory_gib=peak_gib(device), note="does not fit: out of memory")
                del err
                _free(device)
    del editor, tf, named, optimizer, conds, cond
    _free(device)
    # the smaller model first: a part cut off late loses the Qwen-Image rows, not both
    for name, rates in (("step1x", _step1x_rates), ("qwen-image", _qwen_image_rates)):
        if rec.left() < sz.headroom.get(name, 0):
            rec.figure(f"{name} forward", None, "", note="skipped: part budget")
            continue
        rates(rec, sz, device)
        _free(device)


def _free(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def step1x_editor(sz: Sizes, device: str) -> Any:
    """A ``Step1XEditEditor`` (v1.1) over a 12B-shaped DiT and the release-shaped connector, random weights; no VAE
    and no Qwen2.5-VL encoder (``step1x_conditioning`` stands in for ``prepare``)."""
    import torch
    from diffusers import FluxTransformer2DModel

    from rollout.step1x.connector import Step1XConnector
    from rollout.step1x_edit import Step1XEditEditor, Step1XTransformer

    dtype = getattr(torch, sz.dtype)
    tf = materialise(lambda: Step1XTransformer(FluxTransformer2DModel(**sz.step1x),
                                               Step1XConnector(**sz.step1x_connector)), device, dtype, seed=2)
    return Step1XEditEditor(tf.requires_grad_(False), vae=None, encoder=None, version="v1.1", negative_prompt=None)


def step1x_conditioning(editor: Any, sz: Sizes, side: int, batch: int) -> Any:
    """What ``Step1XEditEditor.prepare`` returns for ``batch`` square ``side`` sources, with seeded random Qwen rows
    (``sz.step1x_text_tokens`` of them, all kept) and source latents of the real shapes."""
    import torch

    from rollout.step1x import sampler
    from rollout.step1x_edit import Step1XConditioning

    gen = torch.Generator(device=editor.device).manual_seed(side)
    grid = side // 16
    dim = editor.transformer.connector.S.input_embedder.in_features
    embeds = torch.randn((batch, sz.step1x_text_tokens, dim), generator=gen, device=editor.device)
    latents = torch.randn((batch, grid * grid, editor.transformer.dit.config.in_channels), generator=gen,
                          device=editor.device)
    return Step1XConditioning(embeds=embeds.to(editor.dtype), mask=torch.ones(embeds.shape[:2], device=editor.device,
                                                                                dtype=torch.long),
                              image_latents=latents, latent_ids=sampler.image_ids(grid, grid, "v1.1").to(editor.device),
                              height=side, width=side, source_sizes=[(side, side)] * batch)


def _step1x_rates(rec: Recorder, sz: Sizes, device: str) -> None:
    """Image-steps/s of a Step1X-Edit-shaped DiT (12B, FLUX without guidance embedding) through the adapter's
    ``velocity`` (connector + one DiT call on the target and source tokens, 640 Qwen rows), and the connector alone."""
    import torch

    editor, built = timed(lambda: step1x_editor(sz, device), device)
    tf = editor.transformer
    n_dit = sum(p.numel() for p in tf.dit.parameters())
    n_conn = sum(p.numel() for p in tf.connector.parameters())
    rec.figure("step1x build (meta -> device, random init)", built, "s", memory_gib=peak_gib(device),
               parameters=n_dit + n_conn, connector_parameters=n_conn)
    cfg = tf.dit.config
    layers, hidden = cfg.num_layers + cfg.num_single_layers, cfg.num_attention_heads * cfg.attention_head_dim
    gen = torch.Generator(device=device).manual_seed(0)
    forward_s: dict[int, float] = {}
    for s, b in sz.forward_sizes:
        cond = step1x_conditioning(editor, sz, s, b)
        x = editor.initial_latents(cond, gen)
        with torch.inference_mode():
            editor.velocity(x, 0.5, cond, guidance=1.0)  # warm-up
            _, sec = timed(lambda: editor.velocity(x, 0.5, cond, guidance=1.0), device, sz.repeats)
        forward_s[s] = sec
        seq = x.shape[1] + cond.image_latents.shape[1] + sz.step1x_text_tokens
        flops = _flops_per_image_step(n_dit, layers, hidden, seq) + 2.0 * n_conn * sz.step1x_text_tokens
        rec.figure(f"step1x forward {s}", b / sec, "image-steps/s", memory_gib=peak_gib(device), batch=b, tokens=seq,
                   bf16_peak_share=_peak_share(b / sec, flops),
                   note="connector + one DiT forward (editor.velocity, guidance 1); CFG (default 6) runs two per step")
        if rec.left() < sz.headroom.get("forward 1024", 0):
            break
    side, b = sz.forward_sizes[0]
    cond = step1x_conditioning(editor, sz, side, b)
    t = torch.full((b,), 0.5, device=device, dtype=editor.dtype)
    with torch.inference_mode():
        tf.connector(cond.embeds, t, cond.mask)  # warm-up
        _, sec = timed(lambda: tf.connector(cond.embeds, t, cond.mask), device, sz.repeats)
    rec.figure("step1x connector forward", 1000 * sec, "ms", memory_gib=peak_gib(device), batch=b,
               text_tokens=sz.step1x_text_tokens, share_of_forward=round(sec / forward_s[side], 4))


def _qwen_image_rates(rec: Recorder, sz: Sizes, device: str) -> None:
    """Image-steps/s of a Qwen-Image-Edit-shaped transformer (20B) with its source latents and prompt tokens."""
    import torch
    from diffusers import QwenImageTransformer2DModel

    dtype = getattr(torch, sz.dtype)
    tf, built = timed(lambda: materialise(lambda: QwenImageTransformer2DModel(**sz.qwen_image), device, dtype), device)
    n_params = sum(p.numel() for p in tf.parameters())
    rec.figure("qwen-image build (meta -> device, random init)", built, "s", memory_gib=peak_gib(device),
               parameters=n_params)
    cfg = tf.config
    for s, b in sz.forward_sizes:
        grid = s // 16  # VAE scale 8, 2x2 patches
        tokens = grid * grid
        hidden = torch.randn((b, 2 * tokens, cfg.in_channels), device=device, dtype=dtype)
        text = torch.randn((b, sz.qwen_text_tokens, cfg.joint_attention_dim), device=device, dtype=dtype)
        kwargs = dict(hidden_states=hidden, encoder_hidden_states=text, encoder_hidden_states_mask=None,
                      timestep=torch.full((b,), 0.5, device=device, dtype=dtype), guidance=None,
                      img_shapes=[[(1, grid, grid), (1, grid, grid)]] * b, return_dict=False)
        with torch.inference_mode():
            tf(**kwargs)
            _, sec = timed(lambda: tf(**kwargs), device, sz.repeats)
        seq = 2 * tokens + sz.qwen_text_tokens
        flops = _flops_per_image_step(n_params, cfg.num_layers, cfg.num_attention_heads * cfg.attention_head_dim, seq)
        rec.figure(f"qwen-image forward {s}", b / sec, "image-steps/s", memory_gib=peak_gib(device), batch=b,
                   tokens=seq, bf16_peak_share=_peak_share(b / sec, flops),
                   note="one transformer forward; true CFG (the default) runs two per step")
        if rec.left() < sz.headroom.get("forward 1024", 0):
            break


# ====================================================================================== 3. one GRPO iteration
def part_grpo(rec: Recorder, sz: Sizes, device: str) -> None:
    """One step of ``policy.loop.train`` (DGPO) at the Kontext shapes against the 7B-shaped reward in a Ray actor."""
    import json
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from editrl.config import load_config
    from policy.config import GRPOConfig
    from policy.grpo import train_grpo
    from reward.serve.config import ScorerSpec, ServiceConfig
    from reward.serve.startup import RewardService, init_local_ray
    from reward.serve.throughput import bench_scorer_factory
    from rollout.registry import LOADERS

    side = sz.forward_sizes[0][0]
    init_local_ray(num_cpus=4 if sz.full else 2, num_gpus=1 if sz.full else 0)
    service_cfg = ServiceConfig(name="editrl-gpu-check", replicas=1, num_gpus=1.0 if sz.full else 0.0, num_cpus=1.0,
                                max_batch_edits=32)
    spec = ScorerSpec(factory=bench_scorer_factory, kwargs=dict(device=device, full_shapes=sz.full, batch_size=32))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(1) as pool:  # the actor builds the reward while this process builds the editor
        starting = pool.submit(RewardService.start, spec, service_cfg)
        editor = kontext_editor(sz, device, side)
        editor.transformer.enable_gradient_checkpointing()  # the DGPO update forwards a whole group (see editor part)
        service = starting.result()
    out = Path(tempfile.mkdtemp(prefix="gpu-check-grpo-"))
    try:
        client = service.client(chunk_edits=8)
        client.score_groups([(_source(side), "recolour the red circle to blue", [_source(side)] * 2)])  # warm-up
        rec.figure("policy build + reward service start", time.perf_counter() - t0, "s",
                   memory_gib=peak_gib(device, reset=False))
        LOADERS["gpu-check-kontext"] = lambda path, **kw: editor  # the spec below names the editor built here
        g, p = sz.group_size, sz.grpo_prompts
        cfg = load_config(GRPOConfig, ROOT / "configs" / "policy" / "editworld-grpo.yaml", [
            f"out={out}", "steps=1", "threads=null", "accelerate=false", f"editor.spec=gpu-check-kontext:{side}",
            "editor.lora_rank=32", "editor.lora_alpha=64", "reward.log_oracle=false", f"data.num_tasks={p}",
            f"data.image_size={side}", f"data.prompts_per_step={p}", f"sampling.group_size={g}",
            f"sampling.num_steps={sz.grpo_steps}", "sampling.guidance=2.5", "sampling.prompts_per_chunk=1",
            f"train.micro_batch={g}", "eval.every=0", "eval.num_tasks=0", "checkpoint_every=1000"])
        with torch.no_grad():
            editor.velocity(*_warm_inputs(editor, side, g))
        peak_gib(device)
        train_grpo(cfg, reward_client=client)
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
        row = rows[-1]
        sample, score, update = row["time/sample"], row["time/score"], row["time/update"]
        mem = peak_gib(device)
        free, total = torch.cuda.mem_get_info() if sz.full else (None, None)
        for name in ("sample", "score", "score_wait", "update", "step"):  # step: the policy process's peak memory
            rec.figure(f"grpo {name}", row[f"time/{name}"], "s", memory_gib=mem if name == "step" else None)
        rec.figure("reward share (score / (sample + score + update))", score / (sample + score + update), "",
                   wall_share=round(row["time/score_wait"] / row["time/step"], 4))
        if total is not None:
            rec.figure("GPU memory in use after the iteration (policy + reward processes)", (total - free) / 2**30,
                       "GiB")
        rec.info(prompts=p, group_size=g, sampling_steps=sz.grpo_steps, resolution=side, policy_loss="group_dpo",
                 lora_rank=32, reward="Ray actor, Qwen2.5-VL-7B shapes" if sz.full else "Ray actor, tiny reward",
                 edits=p * g)
    finally:
        LOADERS.pop("gpu-check-kontext", None)
        service.shutdown()
        import ray

        ray.shutdown()
        shutil.rmtree(out, ignore_errors=True)


def _warm_inputs(editor: Any, side: int, batch: int) -> tuple[Any, float, Any]:
    import torch

    cond = editor.prepare([_source(side)] * batch, ["recolour the red circle to blue"] * batch)
    return editor.initial_latents(cond, torch.Generator(device=editor.device).manual_seed(1)), 0.5, cond
