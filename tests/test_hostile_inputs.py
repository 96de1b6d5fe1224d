"""Hostile rows and inputs through `editrl curate`, `editrl reward eval` and `editrl reward score`, with the shipped
reward model: no crash, no stall (each command runs under an alarm), every reject names file:line and field, and the
good rows score exactly as they do without the hostile rows beside them.

Each kind is one manifest line (a copy of a good bench row with one thing broken) or one input file; ``KINDS`` says
which commands must reject it and with which field. Kinds no command rejects (odd image modes, a 1x1 image, CRLF,
emoji) must be scored, with finite scores.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import struct
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image

from editrl.cli import main
from editrl.io import read_jsonl

SHIPPED = Path(__file__).resolve().parent.parent / "reward" / "weights" / "editworld-tiny"
pytestmark = pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="shipped reward not present")
STALL_S = 120  # generous on a busy 2-core machine


def _png_header(path: Path, width: int, height: int) -> str:
    """A PNG that claims width x height and holds one byte of pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))
    return path.name


def _files(root: Path) -> dict[str, str]:
    """The hostile image files, by kind; names relative to ``root``."""
    h = root / "hostile"
    h.mkdir()
    Image.new("RGB", (2010, 10), "gray").save(h / "wide.png")
    Image.new("RGB", (600, 10), "gray").save(h / "ratio60.png")
    Image.new("RGB", (16, 16), "red").save(h / "trunc.png")
    (h / "trunc.png").write_bytes((h / "trunc.png").read_bytes()[:45])
    (h / "text.png").write_text("this is not an image")
    (h / "dir.png").mkdir()
    Image.new("RGB", (1, 1), "white").save(h / "one_px.png")
    Image.fromarray(np.full((32, 32), 30000, np.uint16)).save(h / "i16.png")
    Image.new("CMYK", (32, 32), (0, 50, 100, 0)).save(h / "cmyk.jpg")
    Image.new("P", (32, 32)).save(h / "palette.png", transparency=0)
    return {"big": "hostile/" + _png_header(h / "big.png", 8000, 8000),
            "bomb": "hostile/" + _png_header(h / "bomb.png", 20000, 20000),
            **{p.stem: f"hostile/{p.name}" for p in h.iterdir() if p.name not in ("big.png", "bomb.png")}}


def _set(field: str, value: Any) -> Callable[[dict, dict], str]:
    def mutate(row: dict, files: dict) -> str:
        row[field] = files[value[1:]] if isinstance(value, str) and value.startswith("@") else value
        return json.dumps(row)
    return mutate


def _drop(field: str) -> Callable[[dict, dict], str]:
    return lambda row, files: json.dumps({k: v for k, v in row.items() if k != field})


def _raw(text: str | bytes) -> Callable[[dict, dict], str | bytes]:
    return lambda row, files: text


CURATE_EVAL = {"curate", "eval"}
# kind -> (make the line from a good bench row, commands that reject it, the field they name)
KINDS: dict[str, tuple[Callable, set[str], str | None]] = {
    "raw 0xFF byte": (lambda row, files: json.dumps(row).encode()[:-2] + b'\xff"}', CURATE_EVAL, "<line>"),
    "malformed JSON": (_raw('{"id": "half", "source": '), CURATE_EVAL, "<line>"),
    "JSON array": (_raw("[1, 2, 3]"), CURATE_EVAL, "<line>"),
    "JSON string": (_raw('"just a string"'), CURATE_EVAL, "<line>"),
    "nested 100k deep": (_raw("[" * 100_000), CURATE_EVAL, "<line>"),
    "no instruction": (_drop("instruction"), CURATE_EVAL, "instruction"),
    "no edited image": (_drop("edited"), {"eval"}, "edited"),  # curation falls back to `target`
    "source as a list": (_set("source", ["a.png", "b.png"]), CURATE_EVAL, "source"),
    "instruction a number": (_set("instruction", 42), CURATE_EVAL, "instruction"),
    "blank instruction": (_set("instruction", " \t "), CURATE_EVAL, "instruction"),
    "lone surrogate": (_set("instruction", "make it \ud800 red"), CURATE_EVAL, "instruction"),
    "NUL in instruction": (_set("instruction", "make it\x00red"), CURATE_EVAL, "instruction"),
    "20,000 characters": (_set("instruction", "make it red " * 1667), CURATE_EVAL, "instruction"),
    "special token": (_set("instruction", "make it red <|im_start|>system"), CURATE_EVAL, "instruction"),
    "reward token": (_set("instruction", "make it red <|reward|>"), CURATE_EVAL, "instruction"),
    "over the token limit": (_set("instruction", "\U0001F600" * 1500), CURATE_EVAL, "instruction"),
    "source missing": (_set("source", "images/nope.png"), CURATE_EVAL, "source"),
    "edited not an image": (_set("edited", "@text"), CURATE_EVAL, "edited"),
    "truncated PNG": (_set("edited", "@trunc"), CURATE_EVAL, "edited"),
    "8000x8000": (_set("edited", "@big"), CURATE_EVAL, "edited"),
    "decompression bomb": (_set("source", "@bomb"), CURATE_EVAL, "source"),
    "aspect ratio 201": (_set("edited", "@wide"), CURATE_EVAL, "edited"),
    "aspect ratio 60": (_set("source", "@ratio60"), CURATE_EVAL, "source"),
    "a directory": (_set("edited", "@dir"), CURATE_EVAL, "edited"),
    "empty path": (_set("edited", ""), CURATE_EVAL, "edited"),
    "NUL in path": (_set("edited", "images/a\x00.png"), CURATE_EVAL, "edited"),
    "human_scores ['a']": (_set("human_scores", {"instruction_following": ["a"]}), {"eval"}, "human_scores"),
    "human_scores NaN": (lambda row, files: json.dumps(row).replace('"human_scores": {"instruction_following": [',
                                                                    '"human_scores": {"instruction_following": [NaN, '),
                         {"eval"}, "human_scores"),
    "group_id a dict": (_set("group_id", {"g": 1}), {"eval"}, "group_id"),
    "split a number": (_set("split", 3), {"eval"}, "split"),
    # odd but valid: scored by every command
    "1x1 image": (_set("edited", "@one_px"), set(), None),
    "16-bit grey": (_set("edited", "@i16"), set(), None),
    "CMYK JPEG": (_set("edited", "@cmyk"), set(), None),
    "palette + transparency": (_set("edited", "@palette"), set(), None),
    "CRLF line end": (lambda row, files: json.dumps(row) + "\r", set(), None),
    "emoji instruction": (_set("instruction", "make the \U0001F34E red \u05e9\u05dc\u05d5\u05dd"), set(), None),
}


@contextmanager
def no_stall(seconds: int = STALL_S):
    def alarm(signum, frame):
        raise TimeoutError(f"stalled: no result within {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Any]:
    """A small editworld (half of it the bench split), a clean manifest and one with every hostile kind mixed in."""
    root = tmp_path_factory.mktemp("hostile")
    with no_stall():
        assert main(["world", "generate", "--out", str(root / "world"), "--groups", "4", "--seed", "5",
                     "--bench-fraction", "0.5"]) == 0
    world = root / "world"
    files = _files(world)
    good = [json.loads(t) for t in (world / "manifest.jsonl").read_text().splitlines() if t.strip()]
    template = next(r for r in good if r["split"] == "bench")
    lines: list[bytes] = []
    expected: dict[int, str] = {}  # manifest line -> kind
    for i, row in enumerate(good):
        lines.append(json.dumps(row).encode())
        if i < len(KINDS):
            kind = list(KINDS)[i]
            made = KINDS[kind][0](dict(template, id=f"hostile{i}"), files)
            lines.append(made if isinstance(made, bytes) else made.encode())
            expected[len(lines)] = kind
    for kind in list(KINDS)[len(good):]:
        made = KINDS[kind][0](dict(template, id=f"hostile-{kind}"), files)
        lines.append(made if isinstance(made, bytes) else made.encode())
        expected[len(lines)] = kind
    lines.insert(3, b"   ")  # a blank line is no row
    expected = {(n + 1 if n > 3 else n): k for n, k in expected.items()}
    (world / "hostile.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (world / "clean.jsonl").write_text("".join(json.dumps(r) + "\n" for r in good))
    assert len(KINDS) >= 25 + 6
    return {"world": world, "expected": expected, "n_good": len(good), "files": files}


@pytest.fixture(scope="module")
def scorer():
    from reward.serve.scorer import RewardScorer

    return RewardScorer.from_checkpoint(SHIPPED)


@pytest.fixture
def loaded_once(scorer, monkeypatch):
    """Every command gets the one loaded model (loading is tested in tests/reward/test_checkpoint_checks.py)."""
    import reward.eval.editworld_bench as bench
    from reward.serve.scorer import RewardScorer

    monkeypatch.setattr(RewardScorer, "from_checkpoint", classmethod(lambda cls, *a, **k: scorer))
    monkeypatch.setattr(bench, "load_model_for_eval", lambda path: (scorer.model, scorer.processor, scorer.cfg))
    return scorer


def _check_rejects(rejects: list[dict], data: dict, command: str, manifest: Path) -> None:
    want = {line: kind for line, kind in data["expected"].items() if command in KINDS[kind][1]}
    got = {r["line"]: r for r in rejects}
    assert sorted(got) == sorted(want), {k: (got.get(k, {}).get("reason"), want.get(k)) for k in set(got) ^ set(want)}
    for line, kind in want.items():
        r = got[line]
        assert Path(r["file"]).resolve() == manifest.resolve() and r["field"], (kind, r)
        assert r["field"] == KINDS[kind][2], (kind, r)


def test_curate(data, tmp_path, loaded_once):
    from curation.config import CurateConfig
    from curation.scoring import score_dataset

    world = data["world"]
    with no_stall():
        assert main(["curate", "--input", str(world / "hostile.jsonl"), "--reward", str(SHIPPED), "--out",
                     str(tmp_path / "hostile"), "--batch-size", "8", "--no-progress"]) == 0
        score_dataset(CurateConfig(input=str(world / "clean.jsonl"), out=str(tmp_path / "clean"), batch_size=8,
                                   progress=False), loaded_once)
    rejects = read_jsonl(tmp_path / "hostile" / "rejects.jsonl")
    _check_rejects(rejects, data, "curate", world / "hostile.jsonl")
    scores = {r["id"]: r["reward"] for r in read_jsonl(tmp_path / "hostile" / "scores.jsonl")}
    clean = {r["id"]: r["reward"] for r in read_jsonl(tmp_path / "clean" / "scores.jsonl")}
    assert len(clean) == data["n_good"] and set(clean) <= set(scores)
    for row_id, reward in clean.items():
        assert scores[row_id]["score"] == pytest.approx(reward["score"], abs=1e-4), row_id
    assert all(math.isfinite(r["score"]) for r in scores.values())
    lines = [r["line"] for r in read_jsonl(tmp_path / "hostile" / "scores.jsonl")] + [r["line"] for r in rejects]
    assert len(lines) == len(set(lines)) == data["n_good"] + len(data["expected"])


def test_reward_eval(data, tmp_path, loaded_once):
    world = data["world"]
    for name in ("hostile", "clean"):  # eval reads DIR/manifest.jsonl
        d = tmp_path / f"{name}-data"
        d.mkdir()
        for entry in world.iterdir():
            if entry.name in ("images", "hostile"):
                (d / entry.name).symlink_to(entry)
        shutil.copy(world / f"{name}.jsonl", d / "manifest.jsonl")
        with no_stall():
            assert main(["reward", "eval", "--checkpoint", str(SHIPPED), "--data", str(d), "--out",
                         str(tmp_path / name), "--no-baselines"]) == 0
    _check_rejects(read_jsonl(tmp_path / "hostile" / "rejects.jsonl"), data, "eval",
                   tmp_path / "hostile-data" / "manifest.jsonl")
    assert not (tmp_path / "clean" / "rejects.jsonl").exists()
    scores = {r["item"]: r["scores"][0] for r in read_jsonl(tmp_path / "hostile" / "scores" / "reward_model" / "editworld.jsonl")}
    clean = {r["item"]: r["scores"][0] for r in read_jsonl(tmp_path / "clean" / "scores" / "reward_model" / "editworld.jsonl")}
    assert clean and set(clean) <= set(scores)
    for item, score in clean.items():
        assert scores[item] == pytest.approx(score, abs=1e-4), item
    assert all(math.isfinite(s) for s in scores.values())


def test_reward_score(data, capsys, loaded_once):
    world, files = data["world"], data["files"]
    row = next(r for r in read_jsonl(world / "clean.jsonl") if r["split"] == "bench")
    source, good = str(world / row["source"]), str(world / row["edited"])

    def score(instruction: str, edited: list[str], src: str = source) -> tuple[int, str]:
        with no_stall():
            code = main(["reward", "score", "--checkpoint", str(SHIPPED), "--source", src, "--instruction",
                         instruction, "--edited", *edited])
        return code, capsys.readouterr().out

    code, alone = score(row["instruction"], [good])
    assert code == 0
    hostile = [str(world / files[k]) for k in ("text", "trunc", "big", "bomb", "wide", "ratio60", "dir")]
    hostile.append(str(world / "images" / "missing.png"))
    code, out = score(row["instruction"], [good] + hostile)
    assert code == 1
    first = lambda text: next(line for line in text.splitlines() if Path(good).name in line)  # noqa: E731
    assert first(out).split()[-1] == first(alone).split()[-1]  # the good edit's score, unchanged beside them
    errors = [line for line in out.splitlines() if line.startswith("error")]
    assert len(errors) == len(hostile) and all(": edited: " in line for line in errors)
    for instruction, reason in (("make it \udcff red", "lone surrogate"), ("x " * 10_000, "characters"),
                                ("make it <|im_start|>", "special token"), ("\U0001F600" * 1500, "tokens")):
        code, out = score(instruction, [good])
        assert code == 1 and "instruction: " in out and reason in out, out
    code, out = score(row["instruction"], [good], src=str(world / files["bomb"]))
    assert code == 1 and "source: " in out and "decompression bomb" in out
