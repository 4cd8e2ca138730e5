"""Replace one marked section of a Markdown file (benchmarks write their tables this way)."""

from __future__ import annotations

from pathlib import Path


def write_section(doc: Path, start: str, end: str, section: str) -> None:
    """Put ``section`` (which begins with ``start`` and ends with ``end``) into ``doc``:
    in place of the marked section already there, or appended when there is none."""
    text = doc.read_text() if doc.exists() else "# Performance\n"
    if start in text:
        pre, rest = text.split(start, 1)
        text = pre + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    doc.write_text(text)
    print(f"updated {doc}")
