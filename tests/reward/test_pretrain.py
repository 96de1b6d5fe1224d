"""Stage 0: scene-grounded examples, the answer-only labels, the real CLI with exact resume, and the pretrained
backbone loading as a reward model's ``model.backbone``."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from editrl.cli import main
from editrl.config import load_config
from editworld.grounding import VERDICTS, caption, grounded_example, position_word
from editworld.scene import Scene, Shape
from reward.train.pretrain import answer_loss, answer_scores, example_batch, pretrain
from reward.train.pretrain_config import PretrainConfig

TINY = [  # the reward tests' small backbone; 28 px images fill one merged patch
    "model.pixel_area=784", "model.tiny.hidden_size=64", "model.tiny.num_hidden_layers=2",
    "model.tiny.num_attention_heads=2", "model.tiny.num_key_value_heads=2", "model.tiny.intermediate_size=128",
    "model.tiny.vision_depth=2", "model.tiny.vision_hidden_size=32", "model.tiny.vision_num_heads=2",
    "model.tiny.vision_intermediate_size=64", "model.tiny.vision_fullatt_block_indexes=[1]",
    "model.tiny.vision_patch_size=14", "model.tiny.vocab_merges=20", "train.num_threads=1", "data.image_size=28",
    "data.val_examples=8", "train.batch_size=4", "train.log_every=1", "train.time_budget_minutes=null",
]


def _cfg(out: Path, *extra: str) -> PretrainConfig:
    return load_config(PretrainConfig, "configs/reward/editworld-tiny-pretrain.yaml",
                       [*TINY, f"out_dir={out}", *extra])


def test_positions_and_captions_are_read_off_the_scene():
    assert [position_word(0.1, 0.1), position_word(0.5, 0.1), position_word(0.5, 0.5), position_word(0.9, 0.5),
            position_word(0.9, 0.95)] == ["top left", "top", "center", "right", "bottom right"]
    scene = Scene("black", (Shape("circle", "red", 0.2, 0.8, 0.1), Shape("square", "blue", 0.5, 0.5, 0.1)))
    assert caption(scene) == "black background, red circle bottom left, blue square center"


def test_examples_are_a_pure_function_of_seed_and_index_and_answer_in_the_grammar():
    a, b = grounded_example(3, 5, size=28), grounded_example(3, 5, size=28)
    assert (a.source == b.source).all() and (a.edited == b.edited).all() and a.answer == b.answer
    kinds = {"describe": 0, "verify": 0}
    for i in range(60):
        e = grounded_example(0, i, size=28)
        kinds[e.kind] += 1
        assert e.source.shape == e.edited.shape == (28, 28, 3)
        if e.kind == "verify":
            assert e.answer in set(VERDICTS.values()) and "Instruction: " in e.prompt
        else:
            change = e.answer.split(";")[0].removeprefix("changed: ")
            assert e.answer.startswith("changed: ") and "; quality: " in e.answer and "; after: " in e.answer
            if "quality: clean" in e.answer:  # an undegraded pair differs exactly when something was edited
                assert (change == "nothing") == bool((e.source == e.edited).all())
    assert kinds["describe"] > 15 and kinds["verify"] > 15  # describe_share 0.5


def test_labels_are_the_answer_tokens_only(tmp_path):
    from reward.model.backbone import build_tiny_processor

    cfg = _cfg(tmp_path)
    processor = build_tiny_processor(None, cfg.model)
    examples = [grounded_example(0, i, size=28) for i in range(3)]
    batch, labels = example_batch(processor, examples, cfg.model.pixel_area)
    for row, e in zip(labels, examples):
        assert processor.tokenizer.decode(row[row != -100]) == e.answer + "<|im_end|>"
    # teacher-forced scoring: token t is predicted at t - 1; padding and prompt never count
    logits = torch.full((*labels.shape, len(processor.tokenizer)), -1.0)
    gold = labels[:, 1:].clamp(min=0)
    logits[:, :-1].scatter_(-1, gold.unsqueeze(-1), 1.0)
    ok, n = answer_scores(logits, labels)
    assert torch.equal(ok, n) and torch.equal(n, (labels != -100).sum(1))


def test_answer_loss_by_token_and_by_example_worked_by_hand():
    # row 0: one answer token (class 0) predicted from uniform logits -> nll ln 2
    # row 1: three answer tokens (class 1), each from logits (0, ln 3) -> p = 3/4, nll ln(4/3)
    import math

    labels = torch.tensor([[-100, 0, -100, -100], [-100, 1, 1, 1]])
    logits = torch.zeros(2, 4, 2)
    logits[1, :3, 1] = math.log(3.0)
    by_token = answer_loss(logits, labels, "token")
    by_example = answer_loss(logits, labels, "example")
    assert by_token.item() == pytest.approx((math.log(2) + 3 * math.log(4 / 3)) / 4, abs=1e-6)
    assert by_example.item() == pytest.approx((math.log(2) + math.log(4 / 3)) / 2, abs=1e-6)


def test_cli_pretrains_resumes_exactly_and_its_backbone_loads_into_a_reward_model(tmp_path, capsys):
    full, part = tmp_path / "full", tmp_path / "part"
    steps = ["train.max_steps=4", "train.save_every=2", "train.eval_every=2"]
    assert main(["reward", "pretrain", "--no-progress", "--config", "configs/reward/editworld-tiny-pretrain.yaml",
                 *TINY, *steps, f"out_dir={full}"]) == 0
    assert "use it as model.backbone" in capsys.readouterr().out
    pretrain(_cfg(part, "train.max_steps=4", "train.save_every=2", "train.eval_every=2"), progress=False)
    # interrupt after step 2: drop the step-4 checkpoint and the final folder, then resume
    import shutil

    shutil.rmtree(part / "checkpoints" / "step_000004")
    shutil.rmtree(part / "final")
    result = pretrain(_cfg(part, "train.max_steps=4", "train.save_every=2", "train.eval_every=2", "resume=auto"),
                      progress=False)
    assert result.step == 4
    a, b = load_file(str(full / "final" / "model.safetensors")), load_file(str(part / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    start = load_file(str(full / "checkpoints" / "step_000002" / "model.safetensors"))
    assert not all(torch.equal(a[k], start[k]) for k in a)  # steps 3-4 changed the weights

    from reward.model.editreward import build_reward_model
    from reward.model.config import RewardModelConfig, TinyBackboneConfig

    model, _ = build_reward_model(RewardModelConfig(backbone=str(full / "final"), pixel_area=784, prompt="clip",
                                                    edited_input="pair_clip"))
    loaded = model.backbone.state_dict()
    # the LM head is dropped; every backbone weight is the pretrained one
    for key, value in loaded.items():
        name = key.replace("language_model.", "model.")
        assert torch.equal(a[name], value), key
    assert "lm_head.weight" in a and not any("lm_head" in k for k in loaded)
    # a tiny size set beside a backbone folder would be ignored: refused before any training, naming the field
    with pytest.raises(ValueError, match="tiny.vision_patch_size = 4 is ignored"):
        build_reward_model(RewardModelConfig(backbone=str(full / "final"), pixel_area=784, prompt="clip",
                                             edited_input="pair_clip", tiny=TinyBackboneConfig(vision_patch_size=4)))


def test_the_stage1_preset_from_a_pretrained_backbone_is_the_scratch_preset_but_for_the_backbone():
    from editrl.config import config_to_dict
    from reward.model.checkpoint_checks import ignored_tiny_field
    from reward.train.config import RewardTrainConfig

    scratch = config_to_dict(load_config(RewardTrainConfig, "configs/reward/editworld-tiny.yaml"))
    pre = load_config(RewardTrainConfig, "configs/reward/editworld-tiny-pretrained.yaml")
    assert ignored_tiny_field(pre.model) is None
    pre_d = config_to_dict(pre)
    assert pre_d["data"] == scratch["data"] and pre_d["train"] == scratch["train"]
    same = {k for k in scratch["model"] if k not in ("backbone", "tiny")}
    assert {k: pre_d["model"][k] for k in same} == {k: scratch["model"][k] for k in same}


def test_bad_settings_are_refused_with_the_field(tmp_path):
    with pytest.raises(ValueError, match="model.backbone must be 'tiny'"):
        pretrain(_cfg(tmp_path, "model.backbone=runs/x"), progress=False)
    with pytest.raises(ValueError, match="pixel_area 784 is smaller than data.image_size"):
        pretrain(_cfg(tmp_path, "data.image_size=32"), progress=False)
