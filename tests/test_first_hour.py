"""A newcomer's first hour: the Makefile where only python3 exists, exit code 2 for every usage error, tables that
print in full into a pipe."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from editrl.cli import main

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "reward" / "weights" / "editworld-tiny"


@pytest.mark.skipif(not shutil.which("make") or not shutil.which("python3"), reason="needs make and python3")
def test_makefile_falls_back_to_python3(tmp_path):
    (tmp_path / "python3").symlink_to(shutil.which("python3"))
    out = subprocess.run([shutil.which("make"), "-n", "-B", "-C", str(ROOT), "demo"], env={"PATH": str(tmp_path)},
                         capture_output=True, text=True, check=True).stdout
    assert "python3 -m pip install torch==2.14.1" in out and "python3 -m editrl.cli demo" in out
    assert "python -m" not in out.replace("python3 -m", "")


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["best-of-n", "--out", str(tmp_path)]) == 2  # was SystemExit(1) with a message
    assert "--source, --instruction, --n required" in capsys.readouterr().err
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    assert main(["best-of-n", "--source", str(tmp_path / "a.png"), "--instruction", "x", "--n", "2",
                 "--out", str(tmp_path)]) == 2
    assert "--reward CKPT (or --service NAME) is required" in capsys.readouterr().err
    assert main(["reward", "bench", "--full-shapes"]) == 2
    assert "--full-shapes builds a 7B-parameter model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["curate", "--no-such-flag"])
    assert exc.value.code == 2


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="shipped reward not present")
def test_tables_print_in_full_into_a_pipe(tmp_path, capsys):
    from PIL import Image

    src = tmp_path / "source.png"
    Image.new("RGB", (32, 32), "gray").save(src)
    edited = tmp_path / ("an_edited_image_with_a_name_long_enough_to_overflow_eighty_columns_" + "x" * 40 + ".png")
    Image.new("RGB", (32, 32), "red").save(edited)
    assert main(["reward", "score", "--checkpoint", str(SHIPPED), "--source", str(src), "--instruction",
                 "make the square red", "--edited", str(edited)]) == 0
    out = capsys.readouterr().out
    assert str(edited) in out and "…" not in out
