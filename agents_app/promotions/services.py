"""Label policies and the four-eyes promotion of protected labels (API.md, "Promotions").

Every command takes the append lock first thing in its transaction (as agents_app.services
does), then reads the policy, the request and its approvals, decides, appends its events and
writes the rows that follow them, all in that one transaction. The lock is what makes "the
last approval moves the label once" true: two approvals racing for the last slot are served
one after the other; the second reads the request as applied and gets PromotionFinished
(409), storing nothing (tests/agents_app/api/test_promotions.py, the racing test).
"""

import dataclasses
import uuid
from typing import Any

from django.db import transaction
from django.utils import timezone

from agents_app import event_types as types
from agents_app.diff import DiffSide, revision_diff
from agents_app.exceptions import AgentArchived, AgentNotFound
from agents_app.labels import label_error
from agents_app.promotions.exceptions import (
    PolicyInvalid,
    PromotionFinished,
    PromotionForbidden,
    PromotionNotFound,
    PromotionProblem,
)
from agents_app.promotions.models import LabelPolicy, PromotionApproval, PromotionRequest
from agents_app.revision_data import event_document, event_name
from agents_app.services import MAX_REASON, ChangeContext, _append, _labels, _load, _revision_event
from events.selectors import stream_version
from events.services import append_lock, event_append
from events.types import NewEvent

# The registry's own stream: policy changes are events like any other, with actor and reason.
REGISTRY_STREAM = uuid.uuid5(uuid.NAMESPACE_URL, "urn:agent-registry:registry")
MAX_APPROVALS = 10


# -- policies ----------------------------------------------------------------------------------
def label_policy_set(
    *,
    label: str,
    protected: Any,
    approvals: Any,
    approvals_when_widened: Any = None,
    context: ChangeContext,
    expected_version: int | None = None,
) -> LabelPolicy:
    """Set a label's policy: a registry.label_policy_set event and the row it decides by."""
    if (message := label_error(label)) is not None:
        raise PolicyInvalid(f"label {message}", field="label")
    if not isinstance(protected, bool):
        raise PolicyInvalid("protected must be true or false", field="protected")
    if approvals_when_widened is None:
        approvals_when_widened = approvals
    for field, value in (("approvals", approvals), ("approvals_when_widened", approvals_when_widened)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_APPROVALS:
            raise PolicyInvalid(f"{field} must be a whole number from 1 to {MAX_APPROVALS}", field=field)
    if approvals_when_widened < approvals:
        raise PolicyInvalid(
            f"approvals_when_widened ({approvals_when_widened}) must be at least approvals ({approvals})",
            field="approvals_when_widened",
        )
    metadata = context.metadata()
    policy = {
        "protected": protected,
        "approvals": approvals,
        "approvals_when_widened": approvals_when_widened,
    }
    with transaction.atomic():
        locked_at = append_lock()
        version = stream_version(stream_id=REGISTRY_STREAM)
        # Optimistic concurrency on the registry stream: under the lock the version read is
        # the one appended after; a caller's expected_version (read earlier) may be stale.
        expected = version if expected_version is None else expected_version
        stored = event_append(
            stream_id=REGISTRY_STREAM,
            expected_version=expected,
            events=[NewEvent(type=types.LABEL_POLICY_SET, data={"label": label, "policy": policy})],
            metadata=metadata,
            locked_at=locked_at,
        )
        row, _ = LabelPolicy.objects.update_or_create(
            label=label, defaults={**policy, "updated_by": context.actor, "position": stored[-1].position}
        )
    return row


def _policy(label: str) -> LabelPolicy | None:
    return LabelPolicy.objects.filter(label=label, protected=True).first()


# -- the permission section ----------------------------------------------------------------------
def promotion_permissions(old: DiffSide | None, new: DiffSide) -> dict[str, Any]:
    """The permission section of a request (API.md: the diff's `permissions` section from the
    label's current revision to the proposed one): `{from, to, widened, changes}`.

    A label that pointed nowhere (`old` None) grants nothing yet: whatever the revision may do
    is new, so the request counts as widening and needs `approvals_when_widened`.
    """
    if old is None:
        section = revision_diff(old=new, new=new)["permissions"]
        change = {
            "field": "label",
            "kind": "widened",
            "severity": "high",
            "detail": "the label pointed at no revision: everything this revision may do is new",
        }
        return {**section, "from": None, "widened": True, "changes": [change]}
    return revision_diff(old=old, new=new)["permissions"]


def _side(state, revision: int) -> DiffSide:
    event = _revision_event(state, revision)
    document = event_document(event.data)
    return DiffSide(
        agent=event_name(event.data, document),
        revision=revision,
        content=document.content,
        sha256=document.sha256,
        actor=event.metadata.get("actor", ""),
        recorded_at=event.recorded_at,
        frontmatter=dict(document.frontmatter),
        body=document.body,
        tools=None if document.tools is None else list(document.tools),
        dialect=document.dialect,
    )


# -- requests ----------------------------------------------------------------------------------
def _comment(comment: Any, *, required: bool) -> str:
    if comment is None:
        comment = ""
    if not isinstance(comment, str):
        raise PolicyInvalid("comment must be text", field="comment")
    if required and not comment.strip():
        raise PolicyInvalid("comment is required", field="comment")
    if len(comment) > MAX_REASON:
        raise PolicyInvalid(
            f"comment is {len(comment)} characters; the limit is {MAX_REASON}", field="comment"
        )
    if "\x00" in comment:
        raise PolicyInvalid("comment contains a NUL character", field="comment")
    return comment


def _event_data(row: PromotionRequest, comment: str) -> dict[str, Any]:
    return {
        "request_id": str(row.pk),
        "label": row.label,
        "from_revision": row.from_revision,
        "to_revision": row.to_revision,
        "comment": comment,
    }


def promotion_request(
    *, agent_id: uuid.UUID, label: str, revision: int, context: ChangeContext
) -> PromotionRequest:
    """Ask for a protected label to move to a revision; moves nothing.

    Refused (PromotionProblem, 409) when the label is not protected (move it directly), when
    it already points at that revision, or when a request for that label of that agent is
    still pending (one at a time, so that approvers never review two competing diffs).
    """
    if (message := label_error(label)) is not None:
        raise PolicyInvalid(f"label {message}", field="label")
    metadata = context.metadata()
    with transaction.atomic():
        append_lock()
        policy = _policy(label)
        if policy is None:
            raise PromotionProblem(f"label {label!r} is not protected: move it directly")
        state = _load(agent_id)  # takes the (re-entrant) lock again, with its reads
        if state.archived:
            raise AgentArchived(f"agent {state.name!r} is archived; restore it first")
        if not 1 <= revision <= state.revision:
            raise AgentNotFound(
                f"agent {state.name!r} has no revision {revision} (it has 1 to {state.revision})"
            )
        current = _labels(state).get(label)
        if current == revision:
            raise PromotionProblem(f"label {label!r} of {state.name!r} already points at revision {revision}")
        pending = PromotionRequest.objects.filter(
            agent_id=agent_id, label=label, status=PromotionRequest.Status.PENDING
        ).first()
        if pending is not None:
            raise PromotionProblem(
                f"request {pending.pk} for label {label!r} of {state.name!r} is still pending: "
                "it must be applied, rejected or withdrawn first"
            )
        # A label that pointed nowhere has nothing to compare with (promotion_permissions).
        old = None if current is None else _side(state, current)
        section = promotion_permissions(old, _side(state, revision))
        row = PromotionRequest(
            agent_id=agent_id,
            agent_name=state.name,
            label=label,
            from_revision=current,
            to_revision=revision,
            requested_by=context.actor,
            reason=context.reason,
            required_approvals=policy.approvals_when_widened if section["widened"] else policy.approvals,
            widened=section["widened"],
            permissions=section,
            request_event_id=uuid.uuid4(),
        )
        event = NewEvent(
            type=types.PROMOTION_REQUESTED,
            data={**_event_data(row, context.reason), "required_approvals": row.required_approvals},
            event_id=row.request_event_id,
        )
        _append(state, event, metadata)
        row.save(force_insert=True)
    return row


def _pending(request_id: uuid.UUID) -> PromotionRequest:
    """The request, read under the append lock; finished ones are refused (409, nothing stored)."""
    row = PromotionRequest.objects.filter(pk=request_id).first()
    if row is None:
        raise PromotionNotFound(f"no promotion request {request_id}")
    if row.status != PromotionRequest.Status.PENDING:
        raise PromotionFinished(f"request {request_id} is {row.status}: nothing more can be done with it")
    return row


def promotion_approve(*, request_id: uuid.UUID, comment: Any, context: ChangeContext) -> PromotionRequest:
    """Approve; the approval that reaches required_approvals moves the label in this transaction."""
    comment = _comment(comment, required=True)
    metadata = context.metadata()
    with transaction.atomic():
        append_lock()
        row = _pending(request_id)
        # Whoever the caller is (superuser, token, session): the actor is the authenticated user.
        if context.actor == row.requested_by:
            raise PromotionForbidden("nobody approves their own request")
        if row.approvals.filter(by=context.actor).exists():
            raise PromotionForbidden(f"{context.actor} already approved this request")
        state = _load(row.agent_id)  # takes the (re-entrant) lock again, with its reads
        if state.archived:
            raise AgentArchived(f"agent {state.name!r} is archived; restore it first")
        count = row.approvals.count() + 1
        applies = count >= row.required_approvals
        if applies and _labels(state).get(row.label) != row.from_revision:
            # What the approvers reviewed (from_revision -> to_revision) is no longer the change.
            raise PromotionProblem(
                f"label {row.label!r} moved since the request (it was at {row.from_revision}); "
                "withdraw it and request again"
            )
        approved = NewEvent(
            type=types.PROMOTION_APPROVED,
            data={
                **_event_data(row, comment),
                "approvals": count,
                "required_approvals": row.required_approvals,
            },
        )
        change = _append(state, approved, metadata)
        PromotionApproval.objects.create(request=row, by=context.actor, comment=comment)
        if applies:
            state = dataclasses.replace(state, version=change.stream_version)
            cause = dataclasses.replace(
                context,
                causation_id=str(row.request_event_id),
                reason=row.reason,
                extra={"promotion_request": str(row.pk), "requested_by": row.requested_by},
            )
            moved = NewEvent(type=types.LABEL_MOVED, data={"label": row.label, "revision": row.to_revision})
            _append(state, moved, cause.metadata())
            row.status = PromotionRequest.Status.APPLIED
            row.decided_by = context.actor
            row.decision_comment = comment
            row.decided_at = timezone.now()
            row.save(update_fields=["status", "decided_by", "decision_comment", "decided_at"])
    return row


def _finish(
    *, request_id: uuid.UUID, comment: str, context: ChangeContext, event_type: str, status: str
) -> PromotionRequest:
    metadata = context.metadata()
    with transaction.atomic():
        append_lock()
        row = _pending(request_id)
        if event_type == types.PROMOTION_WITHDRAWN and context.actor != row.requested_by:
            raise PromotionForbidden("only the requester withdraws a request")
        if event_type == types.PROMOTION_REJECTED and context.actor == row.requested_by:
            raise PromotionForbidden("nobody rejects their own request: withdraw it")
        state = _load(row.agent_id)  # takes the (re-entrant) lock again, with its reads
        _append(state, NewEvent(type=event_type, data=_event_data(row, comment)), metadata)
        row.status = status
        row.decided_by = context.actor
        row.decision_comment = comment
        row.decided_at = timezone.now()
        row.save(update_fields=["status", "decided_by", "decision_comment", "decided_at"])
    return row


def promotion_reject(*, request_id: uuid.UUID, comment: Any, context: ChangeContext) -> PromotionRequest:
    """Reject a pending request (someone other than the requester, with a comment)."""
    return _finish(
        request_id=request_id,
        comment=_comment(comment, required=True),
        context=context,
        event_type=types.PROMOTION_REJECTED,
        status=PromotionRequest.Status.REJECTED,
    )


def promotion_withdraw(
    *, request_id: uuid.UUID, comment: Any = "", context: ChangeContext
) -> PromotionRequest:
    """The requester takes back a pending request."""
    return _finish(
        request_id=request_id,
        comment=_comment(comment, required=False),
        context=context,
        event_type=types.PROMOTION_WITHDRAWN,
        status=PromotionRequest.Status.WITHDRAWN,
    )
