import json

import pytest

from editrl.io import DataError, load_image, read_jsonl
from editrl.metrics import MetricsSink, read_metrics


def test_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "manifest.jsonl"
    p.write_text(json.dumps({"a": 1}) + "\n{not json\n")
    with pytest.raises(DataError, match=r"manifest.jsonl:2"):
        read_jsonl(p)


def test_missing_field_names_field(tmp_path):
    p = tmp_path / "manifest.jsonl"
    p.write_text(json.dumps({"a": 1}) + "\n")
    with pytest.raises(DataError, match=r"manifest.jsonl:1: field 'b'"):
        read_jsonl(p, required=("b",))


def test_unreadable_image(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot decode"):
        load_image(bad, manifest=tmp_path / "m.jsonl", line=3, field="edited")


def test_metrics_sink_jsonl(tmp_path):
    with MetricsSink(tmp_path) as sink:
        sink.log({"loss": 1.5, "nan": float("nan")}, step=1)
        sink.log({"loss": 1.0}, step=2)
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and rows[0]["nan"] is None
