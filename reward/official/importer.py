"""``editrl reward import-official``: the released EditReward weights as an editrl reward checkpoint folder.

The release is a full state dict of ``Qwen2_5_VLForConditionalGeneration`` + ``rm_heads.head_{0,1}``, in
``model.safetensors`` or ``model.pth`` (a pickle; read only through ``torch.load(weights_only=True)``, which
refuses anything but tensors and plain containers), raw or wrapped as ``{"model": ...}``, with the key layout
of transformers >= 4.52 (``model.visual.*``, ``model.language_model.*``) or before (``visual.*``, ``model.*``),
bf16 or fp32. The architecture, tokenizer, chat template and image processor come from the base model's
folder (Qwen2.5-VL-7B-Instruct or MiMo-VL-7B-SFT-2508), as in the official code; the reward token
``<|Reward|>`` is added to the tokenizer and the embedding tables keep the checkpoint's row count, which must
equal the tokenizer's length. ``lm_head.weight`` is dropped: the heads read hidden states, nothing reads logits.
The output folder loads with ``reward.model.editreward.load_checkpoint`` (strict) in ``inference: official``.
"""

from __future__ import annotations

import argparse
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from editrl.dimensions import DIMENSIONS
from editrl.io import DataError
from reward.official.prompts import OFFICIAL_MAX_PIXELS, OFFICIAL_REWARD_TOKEN

HEAD_KEY = re.compile(r"^rm_heads\.head_(\d+)\.(\d+)\.(weight|bias)$")
HEAD_LAYERS = ("0", "3", "5")  # Linear(H, width), Linear(width, bottleneck), Linear(bottleneck, 2) in the Sequential
DROPPED = ("lm_head.weight",)
EMBED_KEY = "backbone.language_model.embed_tokens.weight"


@dataclass
class ImportReport:
    """What the importer read and wrote (printed by the command, saved in the output's ``extra.json``)."""

    weights_file: str
    container: str  # "safetensors", "pth (raw state dict)" or "pth ({'model': ...} wrapper)"
    layout: str  # "transformers>=4.52" or "transformers<4.52"
    tensors: int
    parameters: int
    dtypes: dict[str, int]
    base: str
    embedding_rows: int
    reward_token_id: int
    head_width: int
    head_bottleneck: int
    dropped: list[str] = field(default_factory=list)
    out: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ---- reading ---------------------------------------------------------------------------------------
def read_weights(checkpoint: str | Path) -> tuple[dict[str, torch.Tensor], Path, str]:
    """The official state dict of a checkpoint folder (or file): ``model.pth`` first, as the official loader does,
    else ``model.safetensors``. Returns (state, file, container)."""
    path = Path(checkpoint)
    if path.is_dir():
        candidates = [path / "model.pth", path / "model.safetensors"]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise DataError(path, "no model.pth or model.safetensors: not an EditReward checkpoint folder")
        path = found
    elif not path.is_file():
        raise DataError(path, "checkpoint not found")
    if path.suffix == ".safetensors":
        return _read_safetensors(path), path, "safetensors"
    if path.suffix in (".pth", ".pt", ".bin"):
        return _read_pth(path)
    raise DataError(path, f"unknown weights format {path.suffix!r}: expected .safetensors or .pth")


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {key: f.get_tensor(key) for key in f.keys()}
    except Exception as err:  # safetensors raises its own error types for truncated / foreign files
        raise DataError(path, f"cannot read safetensors weights: {err}") from err


def _read_pth(path: Path) -> tuple[dict[str, torch.Tensor], Path, str]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refuses any class or function the pickle names
        raise DataError(path, "refused: the pickle holds more than tensors and plain containers, and is only read "
                              f"with torch.load(weights_only=True) ({' '.join(str(err).split())[:300]})") from err
    except Exception as err:
        raise DataError(path, f"cannot read the .pth file: {type(err).__name__}: {err}") from err
    container = "pth (raw state dict)"
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj, container = obj["model"], "pth ({'model': ...} wrapper)"
    if not isinstance(obj, dict):
        raise DataError(path, f"expected a state dict (or {{'model': state dict}}), got {type(obj).__name__}")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise DataError(path, f"entry {key!r} is a {type(value).__name__}, not a tensor: not a state dict",
                            field=str(key))
    return obj, path, container


# ---- key mapping -----------------------------------------------------------------------------------
def layout_of(state: dict[str, torch.Tensor], path: Path) -> str:
    """Which transformers key layout the state dict uses; mixed or unknown layouts are an error."""
    new = any(k.startswith(("model.language_model.", "model.visual.")) for k in state)
    old = any(k.startswith("visual.") for k in state)
    if new and old:
        raise DataError(path, "keys of both layouts (model.visual.* and visual.*): not one checkpoint")
    if not new and not old:
        raise DataError(path, "no vision tower keys (model.visual.* or visual.*): not an EditReward checkpoint")
    return "transformers>=4.52" if new else "transformers<4.52"


def editrl_key(key: str, layout: str) -> str | None:
    """The editrl name of an official key (None: dropped); raises KeyError for a key the release does not have."""
    if key in DROPPED:
        return None
    head = HEAD_KEY.match(key)
    if head:
        return f"heads.{head.group(1)}.{head.group(2)}.{head.group(3)}"
    if layout == "transformers>=4.52":
        for prefix in ("model.visual.", "model.language_model."):
            if key.startswith(prefix):
                return "backbone." + key[len("model."):]
    else:
        if key.startswith("visual."):
            return "backbone." + key
        if key.startswith("model."):
            return "backbone.language_model." + key[len("model."):]
    raise KeyError(key)


def map_keys(state: dict[str, torch.Tensor], path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str], str, list[str]]:
    """(editrl state, editrl key -> official key, layout, dropped keys); unknown keys are an error naming them."""
    layout = layout_of(state, path)
    out: dict[str, torch.Tensor] = {}
    names: dict[str, str] = {}
    dropped: list[str] = []
    for key, tensor in state.items():
        try:
            new = editrl_key(key, layout)
        except KeyError:
            raise DataError(path, f"unknown key {key!r}: the released EditReward model has only the backbone "
                                  "(visual, language model), lm_head and rm_heads.head_{i}.{0,3,5}", field=key) from None
        if new is None:
            dropped.append(key)
            continue
        out[new], names[new] = tensor, key
    return out, names, layout, dropped


def check_heads(state: dict[str, torch.Tensor], path: Path) -> tuple[int, int]:
    """The released heads: exactly head_0 and head_1, layers 0/3/5, output width 2. Returns (width, bottleneck)."""
    heads = sorted({int(m.group(1)) for k in state if (m := HEAD_KEY.match(k))})
    if heads != list(range(len(DIMENSIONS))):
        first = next((k for k in sorted(state) if k.startswith("rm_heads.")), "rm_heads")
        raise DataError(path, f"{len(heads)} reward heads (rm_heads.head_{heads}); the released model has "
                              f"{len(DIMENSIONS)}, one per dimension {DIMENSIONS}", field=first)
    for i in heads:
        for layer in HEAD_LAYERS:
            for part in ("weight", "bias"):
                key = f"rm_heads.head_{i}.{layer}.{part}"
                if key not in state:
                    raise DataError(path, f"missing {key!r}: a head is Linear-ReLU-Dropout-Linear-ReLU-Linear", field=key)
        out_key = f"rm_heads.head_{i}.5.weight"
        if state[out_key].shape[0] != 2:
            raise DataError(path, f"{out_key} has {state[out_key].shape[0]} outputs; a head emits 2 (mu, log_sigma)",
                            field=out_key)
    return int(state["rm_heads.head_0.0.weight"].shape[0]), int(state["rm_heads.head_0.3.weight"].shape[0])


# ---- the base --------------------------------------------------------------------------------------
def load_base(base: str | Path, rows: int, path: Path, embed_key: str) -> tuple[Any, Any, int]:
    """(processor with the reward token, backbone config with ``rows`` embedding rows, reward token id)."""
    from transformers import AutoConfig, AutoProcessor

    from reward.model.backbone import ensure_reward_token

    base = Path(base)
    if not (base / "config.json").is_file():
        raise DataError(base, "no config.json: --base must be the base model's local folder (Qwen2.5-VL-7B-Instruct "
                              "or MiMo-VL-7B-SFT-2508; hub ids are not fetched)")
    config = AutoConfig.from_pretrained(str(base), local_files_only=True)
    if config.model_type != "qwen2_5_vl":
        raise DataError(base / "config.json", f"model_type {config.model_type!r}: the released EditReward models are "
                                              "Qwen2.5-VL-architecture (qwen2_5_vl)", field="model_type")
    processor = AutoProcessor.from_pretrained(str(base), local_files_only=True)
    if getattr(processor, "chat_template", None) is None:
        raise DataError(base, "the base folder has no chat template (chat_template.json / .jinja): official inference "
                              "renders it")
    tokenizer = processor.tokenizer
    reward_id = ensure_reward_token(processor, OFFICIAL_REWARD_TOKEN)  # a special token at id len(tokenizer), as released
    if len(tokenizer) != rows or reward_id >= rows:
        raise DataError(path, f"{embed_key} has {rows} rows, but the base's tokenizer with {OFFICIAL_REWARD_TOKEN} has "
                              f"{len(tokenizer)} tokens ({OFFICIAL_REWARD_TOKEN} = id {reward_id}): the checkpoint was "
                              f"not trained on the base {base}", field=embed_key)
    config.text_config.vocab_size = rows
    if hasattr(config, "vocab_size"):
        config.vocab_size = rows
    return processor, config, reward_id


# ---- import ----------------------------------------------------------------------------------------
def import_official(checkpoint: str | Path, base: str | Path, out: str | Path, dtype: str | None = None,
                    verify: bool = True) -> ImportReport:
    """Convert a released EditReward checkpoint (+ its base folder) into an editrl reward checkpoint at ``out``.

    ``dtype`` is the compute dtype written to the model config (default: the checkpoint's backbone dtype); the
    weights are stored as read. ``verify`` reloads ``out`` with the strict loader."""
    from accelerate import init_empty_weights
    from transformers import AutoModel

    from reward.model.checkpoint_checks import drop_unknown_config_keys
    from reward.model.config import RewardModelConfig
    from reward.model.editreward import EditRewardModel, load_checkpoint, save_checkpoint

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DataError(out, "exists and is not empty: choose a new output folder")
    state, path, container = read_weights(checkpoint)
    width, bottleneck = check_heads(state, path)
    mapped, names, layout, dropped = map_keys(state, path)
    del state
    if EMBED_KEY not in mapped:
        raise DataError(path, "no embedding table (model.language_model.embed_tokens.weight / model.embed_tokens.weight)")
    rows = int(mapped[EMBED_KEY].shape[0])
    processor, config, reward_id = load_base(base, rows, path, names[EMBED_KEY])
    backbone_dtype = next(t.dtype for k, t in mapped.items() if k.startswith("backbone."))
    dtype = dtype or {torch.bfloat16: "bfloat16", torch.float16: "float16"}.get(backbone_dtype, "float32")
    cfg = RewardModelConfig(backbone=str(Path(base).resolve()), pixel_area=OFFICIAL_MAX_PIXELS, prompt="rubric",
                            head="multiple", head_width=width, head_bottleneck=bottleneck, head_dropout=0.05,
                            dimensions=DIMENSIONS, aggregation="mean_log_sigma", dtype=dtype,
                            reward_token=OFFICIAL_REWARD_TOKEN, head_input="final", edited_input="image",
                            inference="official")
    config._attn_implementation = cfg.attn_implementation
    dropped_config = drop_unknown_config_keys(config)  # e.g. the 7B config's vision_token_id
    with init_empty_weights():
        backbone = AutoModel.from_config(config)
    model = EditRewardModel(backbone, cfg, reward_id)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(mapped))
    if missing:
        raise DataError(path, f"the checkpoint lacks {len(missing)} tensors of the base's architecture, e.g. "
                              f"{missing[:3]}: it was not trained on the base {base}")
    extra = sorted(set(mapped) - set(expected))
    if extra:
        raise DataError(path, f"key {names[extra[0]]!r} is not part of the base's architecture ({len(extra)} such keys)",
                        field=names[extra[0]])
    for key, tensor in expected.items():
        if tuple(mapped[key].shape) != tuple(tensor.shape):
            raise DataError(path, f"{names[key]} has shape {tuple(mapped[key].shape)}; the base's architecture needs "
                                  f"{tuple(tensor.shape)}", field=names[key])
    dtypes: dict[str, int] = {}
    for t in mapped.values():
        dtypes[str(t.dtype).removeprefix("torch.")] = dtypes.get(str(t.dtype).removeprefix("torch."), 0) + 1
    model.load_state_dict(mapped, strict=True, assign=True)
    report = ImportReport(weights_file=str(path), container=container, layout=layout, tensors=len(names) + len(dropped),
                          parameters=sum(t.numel() for t in mapped.values()), dtypes=dtypes, base=str(Path(base).resolve()),
                          embedding_rows=rows, reward_token_id=int(reward_id), head_width=width,
                          head_bottleneck=bottleneck, dropped=dropped + [f"config: {k}" for k in dropped_config],
                          out=str(out))
    save_checkpoint(model, processor, cfg, out, extra={"official_import": report.to_dict()})
    del model, mapped
    write_finetune_config(cfg, out)
    if verify:
        load_checkpoint(out)
    return report


FINETUNE_NAME = "finetune.yaml"


def write_finetune_config(cfg: Any, out: Path) -> Path:
    """``OUT/finetune.yaml``: a ``reward train`` config that continues training the imported model with the
    official objective (uncertainty loss, Monte Carlo estimator, mean-log-sigma pooling, the paper's lr)."""
    import yaml

    from editrl.config import config_to_dict
    from reward.train.config import RewardTrainConfig

    train = RewardTrainConfig(model=cfg, init_from=str(out.resolve()), out_dir=str(out.resolve()) + "-finetune")
    train.data.loss, train.data.estimator, train.train.lr = "uncertainty", "mc", 2e-6
    path = out / FINETUNE_NAME
    path.write_text(f"# editrl reward train --config {path} data.train=PAIRS  (fine-tunes the imported model)\n"
                    + yaml.safe_dump(config_to_dict(train), sort_keys=False))
    return path


def run(args: argparse.Namespace) -> int:
    """CLI handler of ``editrl reward import-official``: import, then print what was read and written."""
    report = import_official(args.checkpoint, args.base, args.out, dtype=args.dtype)
    print(f"read {report.weights_file}: {report.container}, key layout {report.layout}, {report.tensors} tensors "
          f"({report.parameters / 1e6:,.1f}M parameters kept; dtypes {report.dtypes})")
    print(f"base {report.base}: embedding rows {report.embedding_rows} = tokenizer length with {OFFICIAL_REWARD_TOKEN} "
          f"(id {report.reward_token_id}); heads {len(DIMENSIONS)} x Linear(H, {report.head_width})-"
          f"Linear({report.head_width}, {report.head_bottleneck})-Linear({report.head_bottleneck}, 2)")
    if report.dropped:
        print(f"dropped (unused for rewards): {', '.join(report.dropped)}")
    print(f"wrote {report.out} (inference: official); score with: editrl reward score --checkpoint {report.out} "
          "--source SRC --instruction TEXT --edited IMG ...")
    return 0
