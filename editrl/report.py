"""A self-contained HTML report (tables, text, images embedded as data URIs) for runs a person should look at, and
the small statistics and provenance helpers such reports state their results with (intervals, verdicts in words,
package versions, git commit, file hashes)."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

MIN_IMAGE_PX = 96  # the smallest side any image of a report is shown at; smaller pixel art is upscaled (nearest)
MAX_IMAGE_PX = 1060  # widest a figure is shown (the body's width), so its text keeps the size it was drawn at
_NUMERIC = re.compile(r"^[-+\d.,/ \[\]%]*$")  # cells like 0.85, +0.1 [-0.2, +0.3], 4 / 3: aligned right

_STYLE = """
body{font-family:system-ui,sans-serif;font-size:16px;line-height:1.45;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}
h1{border-bottom:2px solid #444}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f2f2f2;text-align:left}td:first-child{text-align:left}td{white-space:nowrap}
td.word{text-align:left}td.txt{text-align:left;max-width:360px;white-space:normal;overflow-wrap:anywhere}
img{max-width:100%;height:auto;border:1px solid #ddd;margin:.3em 0}img.pixels{image-rendering:pixelated}
table.tiles td{vertical-align:middle}table.tiles img{margin:0;max-width:none}
figure{margin:1em 0}figcaption{color:#444;font-size:15px}
p.note{color:#555}
p.verdict{padding:.5em .8em;border-left:5px solid #999;background:#f6f6f6}
p.verdict.sig{border-color:#2a7a2a;background:#eef7ee}p.verdict.ns{border-color:#b07800;background:#fdf6e6}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:13px;white-space:pre-wrap;overflow-wrap:anywhere}
"""


def console() -> Any:
    """A rich console for command output: tables print in full when stdout is a pipe or a file (rich would
    otherwise squeeze them to 80 columns and cut cells short)."""
    from rich.console import Console

    out = Console()
    return out if out.is_terminal else Console(width=1000)


def save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Lay out a matplotlib figure, write it as a PNG (creating the folder, atomically) and close it; returns the path."""
    import matplotlib.pyplot as plt

    import os

    from editrl.io import temp_path

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------- statistics
@dataclass
class Estimate:
    """A measured quantity with its 95% interval, and the value that would mean "no effect" (0 for a gain)."""

    label: str
    value: float
    lo: float
    hi: float
    null: float = 0.0
    how: str = ""  # how the interval was computed, e.g. "t-interval over 64 tasks"

    @property
    def significant(self) -> bool:
        """True when the interval excludes the null value (NaN bounds are never significant)."""
        return bool(math.isfinite(self.lo) and math.isfinite(self.hi) and (self.lo > self.null or self.hi < self.null))

    def interval(self, digits: int = 3) -> str:
        def f(x: float) -> str:
            return "n/a" if not math.isfinite(x) else (f"{x:+.{digits}f}" if self.null == 0 else f"{x:.{digits}f}")

        return f"{f(self.value)} [{f(self.lo)}, {f(self.hi)}]"

    def words(self) -> str:
        """The verdict in words: significant or "not significant", and against what."""
        null = f"{self.null:g}"
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            return "no interval (too few samples): not significant"
        if self.significant:
            side = "above" if self.lo > self.null else "below"
            what = f" (a real {'gain' if side == 'above' else 'loss'})" if self.null == 0 else ""
            return f"significant: the 95% interval lies entirely {side} {null}{what}"
        return f"not significant: the 95% interval includes {null}"

    def sentence(self) -> str:
        how = f"; {self.how}" if self.how else ""
        return f"{self.label}: {self.interval()} (95% interval{how}) - {self.words()}."


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval of the mean of the finite ``values`` (None and NaN skipped; NaN
    bounds for fewer than 2, all NaN for none)."""
    from editrl.stats import t_bounds

    v = [float(x) for x in values if x is not None and math.isfinite(x)]
    return t_bounds(v, confidence) if v else (math.nan, math.nan, math.nan)


def cluster_bootstrap(clusters: Sequence[Any], stat: Callable[[list[Any]], float], resamples: int = 2000,
                      confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(statistic, low, high): a percentile bootstrap that resamples whole ``clusters`` (e.g. the pairs of one group,
    which are not independent of each other); ``stat`` maps a list of clusters to a number."""
    import numpy as np

    clusters = list(clusters)
    value = float(stat(clusters))
    if len(clusters) < 2:
        return value, math.nan, math.nan
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        pick = rng.integers(0, len(clusters), len(clusters))
        x = float(stat([clusters[i] for i in pick]))
        if math.isfinite(x):
            draws.append(x)
    if not draws:
        return value, math.nan, math.nan
    lo, hi = np.quantile(draws, [(1 - confidence) / 2, (1 + confidence) / 2])
    return value, float(lo), float(hi)


# ---------------------------------------------------------------------------------------------- provenance
def file_sha256(path: str | Path, length: int = 16) -> str:
    """The first ``length`` hex digits of a file's SHA-256 ("missing" when there is no such file)."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


def git_commit(folder: str | Path) -> str:
    """``git rev-parse HEAD`` of the checkout holding ``folder``, with " (uncommitted changes)" when its tracked
    files differ from that commit; "unknown" outside a git checkout or without git."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10)
        if head.returncode != 0 or not head.stdout.strip():
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + (" (uncommitted changes)" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def package_versions(names: Sequence[str]) -> dict[str, str]:
    """Installed version of each distribution ("not installed" when absent), without importing it."""
    from importlib import metadata

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# ---------------------------------------------------------------------------------------------- images
def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of PNG bytes, read from the header."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        raise ValueError("not a PNG")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _upscaled_png(data: bytes, min_px: int) -> bytes:
    """PNG bytes whose smaller side is at least ``min_px``: upscaled by an integer factor, nearest neighbour."""
    w, h = png_size(data)
    factor = math.ceil(min_px / max(1, min(w, h)))
    if factor <= 1:
        return data
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        big = im.convert("RGB").resize((w * factor, h * factor), Image.NEAREST)
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    return buf.getvalue()


def image_tag(data: bytes, alt: str = "", min_px: int = MIN_IMAGE_PX, max_px: int = MAX_IMAGE_PX) -> str:
    """An ``<img>`` of PNG bytes with explicit width and height: small pixel art upscaled (nearest) until its smaller
    side is ``min_px``; a figure wider than ``max_px`` shown at that width."""
    small = min(png_size(data)) < min_px
    data = _upscaled_png(data, min_px)
    w, h = png_size(data)
    if w > max_px:
        w, h = max_px, max(1, round(h * max_px / w))
    uri = base64.b64encode(data).decode()
    cls = ' class="pixels"' if small else ""  # crisp pixel art; a figure is never resampled blockily
    return f'<img{cls} src="data:image/png;base64,{uri}" width="{w}" height="{h}" alt="{html.escape(alt)}">'


def pil_png(image: Any) -> bytes:
    """PNG bytes of a PIL image."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


class HtmlReport:
    """Collects sections and writes one HTML file that opens without any other file beside it."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._parts: list[str] = []

    def heading(self, text: str) -> None:
        self._parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str, *, note: bool = False) -> None:
        cls = ' class="note"' if note else ""
        self._parts.append(f"<p{cls}>{html.escape(text)}</p>")

    def verdict(self, estimate: Estimate) -> None:
        """One measured result as a highlighted sentence with its interval and "significant" / "not significant"."""
        cls = "sig" if estimate.significant else "ns"
        self._parts.append(f'<p class="verdict {cls}">{html.escape(estimate.sentence())}</p>')

    def code(self, text: str) -> None:
        self._parts.append(f"<pre>{html.escape(text)}</pre>")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]], *, precision: int = 3,
              tile_px: int = 128) -> None:
        """A table; a cell that is PNG bytes or a PIL image is shown as an image, upscaled (nearest neighbour) until
        its smaller side is at least ``tile_px``."""
        def cell(v: Any) -> str:
            if isinstance(v, (bytes, bytearray)) or hasattr(v, "convert"):
                data = bytes(v) if isinstance(v, (bytes, bytearray)) else pil_png(v)
                return f"<td>{image_tag(data, min_px=max(tile_px, MIN_IMAGE_PX))}</td>"
            if isinstance(v, str) and not _NUMERIC.match(v):  # words read from the left, numbers line up right
                return f'<td class="{"txt" if len(v) > 24 else "word"}">{html.escape(v)}</td>'
            return f"<td>{html.escape(f'{v:.{precision}f}' if isinstance(v, float) else str(v))}</td>"

        images = any(isinstance(v, (bytes, bytearray)) or hasattr(v, "convert") for row in rows for v in row)
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
        cls = ' class="tiles"' if images else ""
        self._parts.append(f"<table{cls}><tr>{head}</tr>{body}</table>")

    def image(self, path: str | Path, caption: str = "") -> None:
        path = Path(path)
        if not path.is_file():
            self.text(f"(missing image: {path})", note=True)
            return
        self._parts.append(f"<figure>{image_tag(path.read_bytes(), path.name)}"
                           f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "\n".join(self._parts)
        path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                        f"<style>{_STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>\n{body}\n</body></html>")
        return path
