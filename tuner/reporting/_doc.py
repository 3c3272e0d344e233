"""The report as a list of blocks, written twice: as Markdown (figures linked) and as one self-contained HTML page
(figures embedded as base64 PNG).

Both are rendered from the same blocks rather than converting the Markdown: the report only needs headings,
paragraphs, bullet lists, tables and figures, and inline ``code`` and ``**bold**``, so no Markdown parser (and no
dependency) is needed, and the HTML never depends on how a parser reads a table. Nothing here imports Keras.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Document"]

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 70rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
code { background: #f3f3f3; padding: 0 0.2rem; border-radius: 3px; font-size: 0.9em; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #555; } .failed { color: #a00; }
"""


def _inline_html(text: str) -> str:
    """Escapes ``text`` and turns its inline ``code`` and ``**bold**`` marks into HTML."""
    out = html.escape(str(text), quote=False)
    out = _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", out)
    return _BOLD.sub(lambda m: f"<strong>{m.group(1)}</strong>", out)


def _cell_md(value: Any) -> str:
    # A pipe would end the cell; a newline would end the row.
    return str(value).replace("|", "\\|").replace("\n", " ")


@dataclass
class Document:
    """A report being built: add blocks in reading order, then write ``markdown()`` and ``html()``.

    Attributes:
        title: the page's title (the first heading).
        blocks: ``(kind, payload)`` pairs: ``h2``, ``p``, ``ul``, ``table``, ``figure``, ``failed``.
    """

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def table(self, head: list[str], rows: list[list[Any]]) -> None:
        self.blocks.append(("table", (list(head), [list(r) for r in rows])))

    def figure(self, path: Path, caption: str) -> None:
        self.blocks.append(("figure", (Path(path), caption)))

    def failed(self, name: str, reason: str) -> None:
        """A figure that could not be drawn, named with its one-line reason where it would have been."""
        self.blocks.append(("failed", f"Figure `{name}` could not be drawn: {reason}"))

    # -- writers -----------------------------------------------------------------------------------------------------
    def markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for kind, payload in self.blocks:
            if kind == "h2":
                lines += [f"## {payload}", ""]
            elif kind in ("p", "failed"):
                lines += [f"*{payload}*" if kind == "failed" else payload, ""]
            elif kind == "ul":
                lines += [f"- {item}" for item in payload] + [""]
            elif kind == "table":
                head, rows = payload
                lines.append("| " + " | ".join(_cell_md(h) for h in head) + " |")
                lines.append("|" + "|".join("---" for _ in head) + "|")
                lines += ["| " + " | ".join(_cell_md(c) for c in row) + " |" for row in rows]
                lines.append("")
            elif kind == "figure":
                path, caption = payload
                lines += [f"![{path.stem}]({path.name})", "", f"*{caption}*", ""]
        return "\n".join(lines).rstrip() + "\n"

    def html(self) -> str:
        """One page with nothing external: the style inline and every figure embedded as a base64 PNG."""
        parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                 f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style></head><body>",
                 f"<h1>{_inline_html(self.title)}</h1>"]
        for kind, payload in self.blocks:
            if kind == "h2":
                parts.append(f"<h2>{_inline_html(payload)}</h2>")
            elif kind == "p":
                parts.append(f"<p>{_inline_html(payload)}</p>")
            elif kind == "failed":
                parts.append(f'<p class="failed">{_inline_html(payload)}</p>')
            elif kind == "ul":
                parts.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in payload) + "</ul>")
            elif kind == "table":
                head, rows = payload
                parts.append("<table><thead><tr>" + "".join(f"<th>{_inline_html(h)}</th>" for h in head)
                             + "</tr></thead><tbody>"
                             + "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>"
                                       for row in rows) + "</tbody></table>")
            elif kind == "figure":
                path, caption = payload
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                parts.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                             f"<figcaption>{_inline_html(caption)}</figcaption></figure>")
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"
