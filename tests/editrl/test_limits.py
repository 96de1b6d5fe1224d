"""Input limits and hostile manifest lines: each is a DataError naming file, line and field, before any big allocation."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
from PIL import Image

from editrl.io import (DataError, InputLimits, input_limits, iter_jsonl, load_image, set_input_limits,
                       write_text_atomic)


def png_header_only(path, width: int, height: int) -> None:
    """A PNG whose header claims width x height but whose pixel data is one byte: decoding it would fail, so a
    limit error proves the size was refused from the header, before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))
                     + chunk(b"IEND", b""))


@pytest.fixture(autouse=True)
def default_limits(monkeypatch):
    for var in ("EDITRL_MAX_IMAGE_PIXELS", "EDITRL_MAX_ASPECT_RATIO", "EDITRL_MAX_INSTRUCTION_CHARS"):
        monkeypatch.delenv(var, raising=False)
    set_input_limits(None)
    yield
    set_input_limits(None)


def test_manifest_is_decoded_per_line(tmp_path):
    p = tmp_path / "manifest.jsonl"
    p.write_bytes("\ufeff".encode() + b'{"a": 1}\n{"a": "\xff"}\n{"a": 3}\n' + b"[" * 100_000 + b"\n[1]\n")
    with pytest.raises(DataError, match=r"manifest.jsonl:2: field '<line>': not UTF-8 text \(byte 0xff at column 8\)"):
        list(iter_jsonl(p))
    rejects: list[DataError] = []
    assert [(n, r["a"]) for n, r in iter_jsonl(p, rejects=rejects)] == [(1, 1), (3, 3)]  # the BOM of line 1 is dropped
    assert [(e.line, e.field) for e in rejects] == [(2, "<line>"), (4, "<line>"), (5, "<line>")]
    assert "nested too deeply" in rejects[1].reason and "JSON object" in rejects[2].reason


def test_image_over_the_pixel_limit_is_refused_from_its_header(tmp_path):
    big = tmp_path / "big.png"
    png_header_only(big, 8000, 8000)
    with pytest.raises(DataError, match=r"m.jsonl:7: field 'edited': image is 8000x8000 = 64,000,000 pixels, more "
                                        r"than max_image_pixels"):
        load_image(big, manifest=tmp_path / "m.jsonl", line=7, field="edited")
    set_input_limits(InputLimits(max_image_pixels=10 ** 12))  # past our limit, PIL's own bomb guard still holds
    bomb = tmp_path / "bomb.png"
    png_header_only(bomb, 20000, 20000)
    with pytest.raises(DataError, match="decompression bomb"):
        load_image(bomb, manifest=tmp_path / "m.jsonl", line=1, field="source")


def test_aspect_ratio_and_limits_from_the_environment(tmp_path, monkeypatch):
    wide = tmp_path / "wide.png"
    Image.new("RGB", (2010, 10)).save(wide)
    with pytest.raises(DataError, match="aspect ratio 201.0 is above max_aspect_ratio = 50"):
        load_image(wide)
    monkeypatch.setenv("EDITRL_MAX_ASPECT_RATIO", "300")
    assert load_image(wide).size == (2010, 10)
    monkeypatch.setenv("EDITRL_MAX_IMAGE_PIXELS", "100")
    with pytest.raises(DataError, match="max_image_pixels = 100 "):
        load_image(wide)
    monkeypatch.setenv("EDITRL_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(Exception, match="EDITRL_MAX_IMAGE_PIXELS='lots': expected a number"):
        input_limits()


def test_corrupt_image_of_any_kind_is_a_data_error(tmp_path):
    p = tmp_path / "x.png"
    Image.new("RGB", (16, 16), "red").save(p)
    p.write_bytes(p.read_bytes()[:40])  # truncated inside the pixel data
    with pytest.raises(DataError, match="cannot decode image"):
        load_image(p, manifest="m.jsonl", line=2, field="edited")


def test_instruction_checks():
    from reward.model.inputs import InputError, check_instruction

    assert check_instruction("  make it red ") == "make it red"
    for text, reason in (("a\ud800b", "lone surrogate"), ("a\x00b", "NUL"), ("x" * 2001, "2,001 characters"),
                         ("use <|im_start|> now", "form of a special token"), ("   ", "empty"), (["a"], "string")):
        with pytest.raises(InputError, match=reason):
            check_instruction(text)
    set_input_limits(InputLimits(max_instruction_chars=5000))
    assert len(check_instruction("x" * 2001)) == 2001


def test_atomic_write_leaves_no_temporary(tmp_path):
    target = tmp_path / "summary.json"
    write_text_atomic(target, json.dumps({"a": 1}))
    assert json.loads(target.read_text()) == {"a": 1} and [p.name for p in tmp_path.iterdir()] == ["summary.json"]
