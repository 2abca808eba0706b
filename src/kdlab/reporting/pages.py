"""Study reports: the same sections as Markdown and as one self-contained HTML page (figures embedded)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from kdlab.core.files import write_atomic

Table = tuple[list[str], list[list[str]]]


@dataclass
class Section:
    """One part of a report: paragraphs, tables and figures (PNG files in the report's folder)."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (file name, caption)


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def to_markdown(title: str, intro: list[str], sections: list[Section]) -> str:
    parts = [f"# {title}", *intro]
    for section in sections:
        parts.append(f"## {section.title}")
        parts += section.paragraphs
        parts += [markdown_table(*table) for table in section.tables]
        parts += [f"![{caption}]({name})\n\n*{caption}*" for name, caption in section.figures]
    return "\n\n".join(parts) + "\n"


# marks the page once loaded: how many figures decoded, and the first script error if any (a browser test reads it)
_CHECK = """<script>
window.addEventListener("error", function (e) { document.body.setAttribute("data-errors", String(e.message)); });
window.addEventListener("load", function () {
  var ok = 0, all = document.images.length;
  for (var i = 0; i < all; i++) { if (document.images[i].complete && document.images[i].naturalWidth > 0) ok++; }
  document.body.setAttribute("data-figures", ok + "/" + all);
});
</script>"""

_STYLE = """body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;line-height:1.45}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.25em .6em;text-align:right}
th{background:#eee}td:first-child,th:first-child{text-align:left}figure{margin:1em 0}img{max-width:100%}
figcaption{color:#555;font-size:.9em}"""


def to_html(title: str, intro: list[str], sections: list[Section], folder: Path) -> str:
    def para(text: str) -> str:
        return f"<p>{html.escape(text)}</p>"

    body = [f"<h1>{html.escape(title)}</h1>", *map(para, intro)]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        body += map(para, section.paragraphs)
        for headers, rows in section.tables:
            head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
            cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
            body.append(f"<table><tr>{head}</tr>{cells}</table>")
        for name, caption in section.figures:
            data = base64.b64encode((folder / name).read_bytes()).decode()
            body.append(
                f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style>{_CHECK}</head><body>{''.join(body)}</body></html>\n"
    )


def write_report(folder: Path, title: str, intro: list[str], sections: list[Section]) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``folder`` (atomically); returns their paths."""
    md, page = folder / "report.md", folder / "report.html"
    write_atomic(md, to_markdown(title, intro, sections).encode())
    write_atomic(page, to_html(title, intro, sections, folder).encode())
    return md, page
