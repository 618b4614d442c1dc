"""Media types beyond JSON: raw agent files, unified diffs, HTML diff fragments, problem bodies."""

from typing import Any

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
    """The side-by-side diff fragment the admin shows too."""

    media_type = "text/html"
    format = "html"


class MarkdownParser(BaseParser):
    """A raw agent file as the request body; the document parser checks the encoding."""

    media_type = "text/markdown"

    def parse(self, stream, media_type=None, parser_context=None) -> bytes:
        return stream.read() if stream is not None else b""
