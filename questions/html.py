"""Answers arrive as HTML from sources we do not control: keep a sanitised copy and a plain-text one."""

import html
from html.parser import HTMLParser

import nh3

ALLOWED_TAGS = {"p", "br", "a", "ul", "ol", "li", "strong", "b", "em", "i", "u", "table", "thead", "tbody", "tr",
                "th", "td", "blockquote", "sup", "sub", "h3", "h4"}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan"}}
BLOCK_TAGS = {"p", "br", "li", "tr", "div", "table", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"}


def sanitise(raw: str) -> str:
    return nh3.clean(
        raw or "",
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    ).strip()


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in {"script", "style"}:
            self._skip += 1
        elif tag in BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in {"script", "style"}:
            self._skip = max(0, self._skip - 1)
        elif tag in BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def to_text(raw: str) -> str:
    """Plain text with one blank line between paragraphs, for searching and for text emails."""
    if "<" not in (raw or ""):
        return html.unescape(raw or "").strip()
    parser = _TextExtractor()
    parser.feed(raw)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).replace("\xa0", " ").split("\n")]
    paragraphs = [line for line in lines if line]
    return "\n\n".join(paragraphs)


def from_text(text: str) -> str:
    """Paragraph HTML for an answer that arrived as plain text."""
    paragraphs = [" ".join(p.split()) for p in (text or "").replace("\r\n", "\n").split("\n\n")]
    return "".join(f"<p>{html.escape(p, quote=False)}</p>" for p in paragraphs if p)
