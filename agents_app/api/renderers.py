"""Media types beyond JSON: raw agent files, unified diffs, HTML diff fragments, problem bodies."""

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
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
