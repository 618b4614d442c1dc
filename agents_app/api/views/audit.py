"""`/events/`: the audit log."""

import uuid
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from agents_app.api import serializers as out
from agents_app.api.errors import InvalidParameter
from agents_app.api.permissions import AUDIT
from agents_app.api.views.base import DEFAULT_PAGE, MAX_PAGE, ApiView
from agents_app.document import NAME_PATTERN
from agents_app.exceptions import AgentNotFound
from agents_app.selectors import agent_ids_named
from events.selectors import event_get, event_list, event_previous_hash


def _event_payload(event, *, include_content: bool) -> dict[str, Any]:
    data = event.data
    if not include_content and "content" in data:
        data = {key: value for key, value in data.items() if key != "content"}
    payload = {
        "position": event.position,
        "event_id": event.event_id,
        "stream_id": event.stream_id,
        "stream_version": event.stream_version,
        "type": event.type,
        "schema_version": event.schema_version,
        "data": data,
        "metadata": event.metadata,
        "recorded_at": event.recorded_at,
        "hash": event.hash,
    }
    return payload


class EventListApi(ApiView):
    """`/events/`: the log, oldest first, by position."""

    permissions = {"GET": AUDIT}

    @extend_schema(
        operation_id="events_list",
        parameters=[
            OpenApiParameter("agent", str, description="Agent name (any name it had) or id"),
            OpenApiParameter("type", str, description="e.g. agent.revised; repeat or comma-separate"),
            OpenApiParameter("actor", str),
            OpenApiParameter("source", str),
            OpenApiParameter("since", OpenApiTypes.DATETIME),
            OpenApiParameter("until", OpenApiTypes.DATETIME),
            OpenApiParameter("after", int, description="Cursor: events after this position"),
            OpenApiParameter("limit", int),
            OpenApiParameter("include", str, enum=["content"]),
        ],
        responses={200: out.EventPageSerializer},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        after = self.query_int("after", default=0, low=0, high=2**62)
        limit = self.query_int("limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
        include = self.query_choice("include", ("", "content"), "")
        since, until = self.query_range()
        stream_ids = None
        if agent_ref := params.get("agent"):
            stream_ids = _stream_ids_for(agent_ref)
        types = [t for value in params.getlist("type") for t in value.split(",") if t] or None
        events = event_list(
            after=after,
            limit=limit + 1,
            stream_ids=stream_ids,
            types=types,
            actor=params.get("actor"),
            source=params.get("source"),
            since=since,
            until=until,
            omit_data_key=None if include == "content" else "content",
        )
        next_url = None
        if len(events) > limit:
            events = events[:limit]
            query = params.copy()
            query["after"] = str(events[-1].position)
            next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        results = [_event_payload(event, include_content=include == "content") for event in events]
        return Response({"results": out.EventSerializer(results, many=True).data, "next": next_url})


def _stream_ids_for(agent_ref: str) -> list[uuid.UUID]:
    try:
        return [uuid.UUID(agent_ref)]
    except ValueError:
        pass
    if not NAME_PATTERN.fullmatch(agent_ref):
        raise InvalidParameter("agent", "must be an agent name or id")
    return agent_ids_named(name=agent_ref)


class EventApi(ApiView):
    """`/events/{position}/`: one event with its hash and the previous hash of its stream."""

    permissions = {"GET": AUDIT}

    @extend_schema(
        operation_id="events_read", responses={200: out.EventDetailSerializer, 404: out.ProblemSerializer}
    )
    def get(self, request: Request, position: int) -> Response:
        event = event_get(position=position) if position < 2**63 else None
        if event is None:
            raise AgentNotFound(f"no event at position {position}")
        payload = _event_payload(event, include_content=True)
        payload["previous_hash"] = event_previous_hash(
            stream_id=event.stream_id, stream_version=event.stream_version
        )
        return Response(out.EventDetailSerializer(payload).data)
