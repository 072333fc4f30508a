"""One document written twice: a self-contained HTML page (inline CSS, PNGs as data URIs, no script)
and the same content as Markdown (PNGs beside it). Every user string is escaped for both."""
from __future__ import annotations

import base64
import html
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hbbench.labels import markdown_table
from hbbench.rundir import atomic_write_text

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;font-size:15px;
 line-height:1.45;color:#1a1a1a;background:#fff;max-width:1180px;margin:24px auto;padding:0 20px}
h1{font-size:26px;margin-bottom:4px}h2{font-size:20px;margin-top:34px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:16px;margin-top:22px}
table{border-collapse:collapse;margin:10px 0 16px;font-size:13.5px}
th,td{border:1px solid #cfcfcf;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td .ci{color:#555;font-size:12px}td .sub{display:block;color:#333}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
pre{background:#f6f6f6;padding:8px 10px;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
figure{margin:12px 0 22px}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:13.5px;color:#333;margin-top:4px}
.swatch{display:inline-block;width:11px;height:11px;border:1px solid #333;margin-right:4px;vertical-align:-1px}
.note{background:#fff7e0;border-left:4px solid #E69F00;padding:6px 10px}
.verdict{margin:4px 0}
"""


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def md_esc(text) -> str:
    """Plain text inside Markdown: HTML-escaped (renderers pass raw HTML through), pipes escaped."""
    return html.escape(str(text), quote=False).replace("|", "\\|")


@dataclass
class TableCell:
    """A table cell whose HTML differs from its Markdown (markup, data attributes, right-aligned)."""
    text: str  # Markdown / plain text
    html: str  # already escaped HTML
    attrs: dict = field(default_factory=dict)
    num: bool = True


def _cell_html(c) -> str:
    return c.html if isinstance(c, TableCell) else esc(c)


def _cell_td(c) -> str:
    if isinstance(c, TableCell):
        attrs = "".join(f' {esc(k)}="{esc(v)}"' for k, v in c.attrs.items())
        cls = ' class="num"' if c.num else ""
        return f"<td{cls}{attrs}>{c.html}</td>"
    return f"<td>{esc(c)}</td>"


def _cell_md(c) -> str:
    return md_esc(c.text) if isinstance(c, TableCell) else md_esc(c)


def number(text: str, attrs: dict | None = None) -> TableCell:
    """A right-aligned number, the same in HTML and Markdown."""
    return TableCell(text, esc(text), attrs or {})


def f3(v) -> str:
    return "—" if v is None or pd.isna(v) else f"{v:.3f}"


def ci(lo, hi) -> str:
    return "" if pd.isna(lo) else f"[{lo:.2f}, {hi:.2f}]"


def signed(v) -> str:
    return "—" if pd.isna(v) else f"{v:+.3f}"


class Doc:
    def __init__(self, files_dir: Path):
        self.html: list[str] = []
        self.md: list[str] = []
        self.files_dir = files_dir
        self.prefix, self.depth = "", 0  # set by ``scope``
        self.figures: set[str] = set()
        self.ids: set[str] = set()  # HTML ids given so far: each names one element
        if files_dir.is_dir():  # figures of an earlier report that this one may not draw
            for old in files_dir.glob("*.png"):
                old.unlink()

    @contextmanager
    def scope(self, prefix: str):
        """Sections written inside are one level deeper and their anchors, table ids and figure files
        start with ``prefix``: one model's sections of a model grid's report, apart from another's."""
        saved = self.prefix, self.depth
        self.prefix, self.depth = saved[0] + prefix, saved[1] + 1
        try:
            yield
        finally:
            self.prefix, self.depth = saved

    def _id(self, name: str | None) -> str | None:
        if not name:
            return name
        name = self.prefix + name
        if name in self.ids:  # a second element with one id: links and the tests' lookups find the first
            raise ValueError(f"report: the HTML id {name!r} is given twice")
        self.ids.add(name)
        return name

    def heading(self, level: int, text: str, anchor: str | None = None):
        level, anchor = level + self.depth, self._id(anchor)
        aid = f' id="{esc(anchor)}"' if anchor else ""
        self.html.append(f"<h{level}{aid}>{esc(text)}</h{level}>")
        self.md.append(f"{'#' * level} {md_esc(text)}\n")

    def para(self, text: str, cls: str | None = None):
        c = f' class="{cls}"' if cls else ""
        self.html.append(f"<p{c}>{esc(text)}</p>")
        self.md.append(("> " if cls == "note" else "") + md_esc(text) + "\n")

    def bullets(self, items: list[str]):
        self.html.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>")
        self.md.append("\n".join(f"- {md_esc(i)}" for i in items) + "\n")

    def code(self, text: str):
        self.html.append(f"<pre><code>{esc(text)}</code></pre>")
        fence = "`" * max(3, max((len(r) for r in re.findall("`+", text)), default=0) + 1)
        self.md.append(f"{fence}\n{text}\n{fence}\n")

    def table(self, header: list[str], rows: list[list], table_id: str | None = None, caption: str | None = None):
        """Cells are plain strings or ``TableCell`` objects."""
        table_id = self._id(table_id)
        tid = f' id="{esc(table_id)}"' if table_id else ""
        out = [f"<table{tid}>"]
        if caption:
            out.append(f"<caption style='caption-side:bottom;text-align:left;font-size:13px;color:#444'>"
                       f"{esc(caption)}</caption>")
        out.append("<thead><tr>" + "".join(f"<th>{_cell_html(h)}</th>" for h in header) + "</tr></thead><tbody>")
        for row in rows:
            out.append("<tr>" + "".join(_cell_td(c) for c in row) + "</tr>")
        out.append("</tbody></table>")
        self.html.append("".join(out))
        md = markdown_table([_cell_md(h) for h in header], ([_cell_md(c) for c in row] for row in rows))
        self.md.append(md + ("\n" + md_esc(caption) + "\n" if caption else ""))

    def figure(self, name: str, png: bytes, caption: str, alt: str):
        name = self.prefix + name  # a file name, not an HTML id
        if name in self.figures:  # the Markdown would show the later figure twice
            raise ValueError(f"figure {name} written twice")
        self.figures.add(name)
        self.files_dir.mkdir(parents=True, exist_ok=True)
        (self.files_dir / name).write_bytes(png)
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        self.html.append(f'<figure><img src="{uri}" alt="{esc(alt)}"><figcaption>{esc(caption)}</figcaption></figure>')
        self.md.append(f"![{md_esc(alt)}]({self.files_dir.name}/{name})\n\n*{md_esc(caption)}*\n")

    def raw(self, html_text: str, md_text: str):
        self.html.append(html_text)
        self.md.append(md_text)

    def write(self, html_path: Path, md_path: Path, title: str) -> None:
        """The HTML page (its Content-Security-Policy allows nothing but inline styles and data-URI
        images) and the Markdown file."""
        page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
                "style-src 'unsafe-inline'\">"
                f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n"
                + "\n".join(self.html) + "\n</body></html>\n")
        atomic_write_text(html_path, page)
        atomic_write_text(md_path, "\n".join(self.md))
