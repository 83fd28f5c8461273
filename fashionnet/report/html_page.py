"""Self-contained HTML pages: one file that opens from the file system with nothing to fetch.

Every text goes through `html.escape` here, so callers pass plain text and get markup back.
Figures are embedded as data URIs; a Content-Security-Policy that allows only inline styles
and data: images makes the browser itself refuse anything else, so a page cannot quietly
come to depend on the network. Wide tables scroll inside their own box, so a phone shows
the page at its width instead of zooming out.
"""

import base64
import io
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any

from PIL import Image

CONTENT_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body { font-family: system-ui, sans-serif; line-height: 1.5; margin: 0; color: #1b1f24; }
main { max-width: 62rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.5rem; overflow-wrap: anywhere; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: 0.25rem 0.6rem; text-align: left;
  white-space: nowrap; }
th { background: #f3f5f7; }
figure { margin: 1rem 0; }
img { max-width: 100%; height: auto; }
figcaption { color: #57606a; }
code { overflow-wrap: anywhere; }
"""
# A palette PNG: half the bytes of full colour, and 256 colours keep a colour bar's gradient
# smooth (64 showed steps).
THUMBNAIL_COLORS = 256


def page(title: str, body: str) -> str:
    """A whole HTML document around `body` (markup), titled with the text `title`."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_POLICY}">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n<h1>{escape(title)}</h1>\n{body}\n</main>\n</body>\n</html>\n"
    )


def section(heading: str, *parts: str) -> str:
    """A titled part of a page: the text `heading` above the markup `parts`."""
    return f"<section>\n<h2>{escape(heading)}</h2>\n" + "\n".join(parts) + "\n</section>"


def paragraph(text: str) -> str:
    return f"<p>{escape(text)}</p>"


class Markup(str):
    """A string that is already HTML, built here from escaped parts."""


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A table of text cells, in a box that scrolls sideways when the page is narrower."""
    head = "".join(f"<th>{escape(str(cell))}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell_markup(cell)}</td>" for cell in row) + "</tr>\n"
        for row in rows
    )
    return f'<div class="scroll"><table>\n<tr>{head}</tr>\n{body}</table></div>'


def cell_markup(cell: Any) -> str:
    """A table cell: text is escaped; a `Markup` (a link, say) is kept as it is."""
    return cell if isinstance(cell, Markup) else escape(str(cell))


def link(href: str, text: str) -> Markup:
    return Markup(f'<a href="{escape(href)}">{escape(text)}</a>')


def figure(src: str, caption: str) -> str:
    """An image with its caption; the caption is also its alternative text."""
    return (
        f'<figure><img src="{escape(src)}" alt="{escape(caption)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def png_data_uri(path: Path, max_width: int | None = None) -> str:
    """The PNG at `path` as a data: URI; narrowed to `max_width` pixels (and fewer colours) for
    places where every byte of the page is stored and sent again."""
    data = Path(path).read_bytes()
    if max_width is not None:
        data = thumbnail_png(data, max_width)
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def thumbnail_png(data: bytes, max_width: int) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        small = image.convert("RGB")
    small.thumbnail((max_width, small.height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    small.quantize(THUMBNAIL_COLORS).save(out, format="PNG", optimize=True)
    return out.getvalue()
