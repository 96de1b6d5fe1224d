"""A Ray reward client gives up within its bounded, configurable time, naming the address and how to start a service
(before: `--reward ray://NAME@ADDRESS` with nothing there hung for minutes)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time


def _curate(tmp_path, address: str, timeout_s: str) -> tuple[subprocess.CompletedProcess, float]:
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "manifest.jsonl").write_text(json.dumps({"source": "a.png", "instruction": "x", "edited": "a.png"}) + "\n")
    env = dict(os.environ, EDITRL_RAY_CONNECT_TIMEOUT_S=timeout_s)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "editrl.cli", "curate", "--input", str(tmp_path / "manifest.jsonl"),
                           "--reward", f"ray://scorer@{address}", "--out", str(tmp_path / "out"), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=120)
    return proc, time.monotonic() - start


def test_nothing_listening_fails_fast_naming_the_address(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free, and closed again: nothing listens there
    proc, seconds = _curate(tmp_path, f"127.0.0.1:{port}", "30")
    assert proc.returncode == 2, proc.stderr
    assert f"no Ray cluster at 127.0.0.1:{port}" in proc.stderr and "editrl reward serve" in proc.stderr
    assert "Traceback" not in proc.stderr and seconds < 30


def test_an_address_that_never_answers_gives_up_after_the_timeout(tmp_path):
    timeout_s = "4"
    with socket.socket() as listener:  # accepts TCP, never speaks Ray's protocol
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        proc, seconds = _curate(tmp_path, f"127.0.0.1:{port}", timeout_s)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"no answer from a Ray cluster at 127.0.0.1:{port} within {timeout_s} s" in proc.stderr
    assert "EDITRL_RAY_CONNECT_TIMEOUT_S" in proc.stderr and seconds < 4 + 25
