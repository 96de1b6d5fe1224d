"""A self-contained HTML report (tables, text, images embedded as data URIs) for runs a person should look at."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Sequence

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #444}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0;image-rendering:pixelated}
p.note{color:#555}
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

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]], *, precision: int = 3) -> None:
        def cell(v: Any) -> str:
            return html.escape(f"{v:.{precision}f}" if isinstance(v, float) else str(v))

        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
        self._parts.append(f"<table><tr>{head}</tr>{body}</table>")

    def image(self, path: str | Path, caption: str = "") -> None:
        path = Path(path)
        if not path.is_file():
            self.text(f"(missing image: {path})", note=True)
            return
        data = base64.b64encode(path.read_bytes()).decode()
        self._parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(path.name)}">'
                           f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "\n".join(self._parts)
        path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                        f"<style>{_STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>\n{body}\n</body></html>")
        return path
