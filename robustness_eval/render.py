"""Rendering the report's sections: one list of titled blocks, written as Markdown and as self-contained HTML.

The report and the comparison build `Section`s; this module turns them into text, escapes what users named
(`markdown_literal`) and writes files whole (`write_text_atomic`).
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

MARKDOWN_SPECIAL = "\\`*_[]<>|#!~&"


def markdown_literal(text: str) -> str:
    """`text` as Markdown that renders as itself: special characters escaped, line breaks as spaces."""
    out = "".join("\\" + c if c in MARKDOWN_SPECIAL else c for c in str(text))
    return out.replace("\r", " ").replace("\n", " ")


def literal_values(value):
    """Every string value (not dict keys) in results.json made a Markdown literal: the report's Markdown embeds
    names users chose (data sets, models, shells, attacks) and must not let them format or link anything."""
    if isinstance(value, str):
        return markdown_literal(value)
    if isinstance(value, dict):
        return {k: literal_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [literal_values(v) for v in value]
    return value


def fence(code: str) -> str:
    """A Markdown code fence longer than any run of backticks inside `code`."""
    return "`" * max(3, 1 + max((len(run) for run in re.findall("`+", code)), default=0))


@dataclass
class Section:
    """A titled block: paragraphs, an optional table and optional images (paths)."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    images: list[tuple[str, Path]] = field(default_factory=list)
    code: str | None = None
    notes: list[str] = field(default_factory=list)  # paragraphs shown after the table


def to_markdown(parts: list[Section], directory: Path) -> str:
    lines = []
    for number, s in enumerate(parts):
        lines += [("# " if number == 0 else "## ") + s.title, ""]
        for paragraph in s.paragraphs:
            lines += [paragraph, ""]
        if s.header:
            lines.append("| " + " | ".join(s.header) + " |")
            lines.append("|" + "---|" * len(s.header))
            lines += ["| " + " | ".join(row) + " |" for row in s.rows]
            lines.append("")
        for paragraph in s.notes:
            lines += [paragraph, ""]
        for name, path in s.images:
            lines += [f"![{name}]({path.relative_to(directory).as_posix()})", ""]
        if s.code:
            lines += [fence(s.code), s.code, fence(s.code), ""]
    return "\n".join(lines)


def to_html(parts: list[Section]) -> str:
    body = []
    for number, s in enumerate(parts):
        tag = "h1" if number == 0 else "h2"
        body.append(f"<{tag}>{html.escape(s.title)}</{tag}>")
        body += [f"<p>{html.escape(p)}</p>" for p in s.paragraphs]
        if s.header:
            head = "".join(f"<th>{html.escape(h)}</th>" for h in s.header)
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                           for row in s.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        body += [f"<p>{html.escape(p)}</p>" for p in s.notes]
        for name, path in s.images:
            data = base64.b64encode(path.read_bytes()).decode()
            body.append(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(name)}</figcaption></figure>")
        if s.code:
            body.append(f"<pre>{html.escape(s.code)}</pre>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.25em .6em}"
             "th{background:#eee}img{max-width:100%}figure{margin:1em 0}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(parts[0].title)}"
            f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n")



def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` by a rename, so a crash leaves the old file or the new one, never half of one."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(text)
    partial.replace(path)
