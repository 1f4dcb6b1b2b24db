"""The report page: one self-contained HTML file (inline CSS, figures as base64 PNG data URIs).

Why no template engine and no scripts: the page must open from a USB stick or an e-mail attachment with no
network and no JavaScript, and every string that comes from a file (labels, config values, notes) is
escaped with ``html.escape`` so nothing in the data can inject markup.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import quote

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2430;
background:#f6f7f9}
header{background:#1f3a5f;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:1.6em} header p{margin:4px 0 0;opacity:.85}
nav{background:#fff;border-bottom:1px solid #dde1e6;padding:8px 32px;font-size:.9em}
nav a{margin-right:14px;color:#1f3a5f;text-decoration:none}
main{max-width:1200px;margin:0 auto;padding:8px 32px 40px}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;margin:18px 0;padding:6px 22px 16px}
h2{color:#1f3a5f;border-bottom:2px solid #e3e8ef;padding-bottom:4px}
figure{display:inline-block;margin:8px 12px 8px 0;vertical-align:top;max-width:100%}
figure img{max-width:100%;height:auto;border:1px solid #eceff3}
figcaption{font-size:.85em;color:#555;max-width:720px}
table{border-collapse:collapse;margin:10px 0 14px;font-size:.88em}
caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border:1px solid #d5dae1;padding:4px 9px;text-align:right}
th{background:#eef2f7} td:first-child,th:first-child{text-align:left}
.note{color:#7a5a00;background:#fff8e1;border-left:4px solid #f0c040;padding:6px 10px;margin:8px 0}
pre{background:#f3f5f8;padding:10px;overflow:auto;max-height:420px;font-size:.82em}
.ci{color:#666;font-size:.92em}
footer{color:#777;font-size:.8em;text-align:center;padding:12px}
"""


@dataclass
class Section:
    """One titled block of the page: figures, tables, preformatted text and notes, in order."""

    key: str
    title: str
    blocks: list[str] = field(default_factory=list)

    def figure(self, png: bytes, caption: str, alt: str) -> None:
        data = base64.b64encode(png).decode("ascii")
        self.blocks.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{escape(alt)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )

    def note(self, text: str) -> None:
        self.blocks.append(f'<p class="note">{escape(text)}</p>')

    def text(self, text: str) -> None:
        self.blocks.append(f"<p>{escape(text)}</p>")

    def link(self, href: str, text: str) -> None:
        """A link to a file beside the report (a relative path, percent-encoded)."""
        self.blocks.append(f'<p><a href="{escape(quote(href))}">{escape(text)}</a></p>')

    def pre(self, obj: Any) -> None:
        body = obj if isinstance(obj, str) else json.dumps(obj, indent=2, default=str)
        self.blocks.append(f"<pre>{escape(body)}</pre>")

    def table(self, caption: str, header: list[str], rows: list[list[Any]]) -> None:
        head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
        self.blocks.append(
            f"<table><caption>{escape(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>"
        )


def cell(v: Any) -> str:
    """A table cell: floats to 3 decimals, (point, low, high) or {point, low, high} as 'p [l, h]', n/a."""
    if isinstance(v, dict) and "point" in v:
        v = (v["point"], v.get("low"), v.get("high")) if v.get("low") is not None else v["point"]
    if isinstance(v, list | tuple) and len(v) == 3 and all(isinstance(x, int | float) for x in v):
        return f'{v[0]:.3f} <span class="ci">[{v[1]:.3f}, {v[2]:.3f}]</span>'
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}"
    return escape(str(v))


def render_page(title: str, subtitle: str, sections: list[Section], footer: str) -> str:
    nav = "".join(f'<a href="#{escape(s.key)}">{escape(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{escape(s.key)}"><h2>{escape(s.title)}</h2>{"".join(s.blocks)}</section>'
        for s in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p>{escape(subtitle)}</p></header>"
        f"<nav>{nav}</nav><main>{body}</main><footer>{escape(footer)}</footer></body></html>\n"
    )
