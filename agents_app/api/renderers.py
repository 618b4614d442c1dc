"""Media types beyond JSON: raw agent files, unified diffs, HTML diff fragments, problem bodies."""

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.templatetags.static import static
from django.utils.html import escape
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer, JSONRenderer


class ProblemJSONRenderer(JSONRenderer):
    media_type = "application/problem+json"
    format = "problem"


class _TextRenderer(BaseRenderer):
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context=None) -> bytes:
        if isinstance(data, bytes):
            return data
        return str(data).encode("utf-8")


class MarkdownRenderer(_TextRenderer):
    """The exact stored bytes of an agent file."""

    media_type = "text/markdown"
    format = "md"


class UnifiedDiffRenderer(_TextRenderer):
    """A unified diff that `git apply` and `patch -p1` apply."""

    media_type = "text/x-diff"
    format = "unified"


class HTMLFragmentRenderer(_TextRenderer):
    """`?format=html`: a page around the side-by-side diff the admin shows too (diff_page)."""

    media_type = "text/html"
    format = "html"


# The page holds no inline style or script: the Content-Security-Policy allows styles from this
# origin only, so the diff's rules come from the admin's stylesheet (which holds DIFF_CSS
# verbatim) and the page's own few from diff-page.css.
DIFF_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{diff_css}">
<link rel="stylesheet" href="{page_css}">
</head>
<body class="agent-diff-page">
<h1>{title}</h1>
{fragment}
</body>
</html>
"""


def diff_page(*, fragment: str, title: str) -> str:
    """A complete HTML page around a diff fragment (agents_app.diff.html_diff), readable on its
    own: its title, the diff, and its stylesheets. `fragment` is already escaped HTML."""
    return DIFF_PAGE.format(
        title=escape(title),
        diff_css=escape(static("agents_app/admin.css")),
        page_css=escape(static("agents_app/diff-page.css")),
        fragment=fragment,
    )


class MarkdownParser(BaseParser):
    """A raw agent file as the request body; the document parser checks the encoding."""

    media_type = "text/markdown"

    def parse(self, stream, media_type=None, parser_context=None) -> bytes:  # type: ignore[override]  # the raw file, not a mapping
        if stream is None:
            return b""
        # DRF checks DATA_UPLOAD_MAX_MEMORY_SIZE for its JSON and form parsers only: without this
        # a raw body of any size would be read into memory whole (a 413 like a JSON body's).
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is None:
            return stream.read()
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.")
        return raw
