"""Reads of label policies and promotion requests."""

import uuid

from django.db.models import Case, IntegerField, QuerySet, Value, When

from agents_app.promotions.exceptions import PromotionNotFound
from agents_app.promotions.models import LabelPolicy, PromotionRequest
from agents_app.selectors import agents_current
from events.timefmt import iso

DEFAULT_POLICY = {"protected": False, "approvals": 1, "approvals_when_widened": 1}


def label_policy_get(*, label: str) -> dict[str, object]:
    """A label's policy; a label nobody set a policy for is open (moves need no approval)."""
    row = LabelPolicy.objects.filter(label=label).first()
    if row is None:
        return {"label": label, **DEFAULT_POLICY, "updated_by": "", "updated_at": None}
    return {
        "label": label,
        "protected": row.protected,
        "approvals": row.approvals,
        "approvals_when_widened": row.approvals_when_widened,
        "updated_by": row.updated_by,
        "updated_at": row.updated_at,
    }


def label_policies() -> QuerySet[LabelPolicy]:
    return LabelPolicy.objects.order_by("label")


def label_is_protected(label: str) -> bool:
    """Read by every label move under the append lock (agents_app.services.agent_label_move)."""
    return LabelPolicy.objects.filter(label=label, protected=True).exists()


def protected_labels() -> set[str]:
    return set(LabelPolicy.objects.filter(protected=True).values_list("label", flat=True))


def promotion_list(
    *, status: str | None = None, agent_id: uuid.UUID | None = None, agent_name: str | None = None
) -> QuerySet[PromotionRequest]:
    """Requests, pending first, then newest first; `agent_name`: the agent that has that name now
    (its requests under any earlier name too), else requests made under that name."""
    rows = PromotionRequest.objects.prefetch_related("approvals")
    if status:
        rows = rows.filter(status=status)
    if agent_id is not None:
        rows = rows.filter(agent_id=agent_id)
    if agent_name is not None:
        current = agents_current().filter(name=agent_name).values_list("agent_id", flat=True).first()
        rows = rows.filter(agent_id=current) if current else rows.filter(agent_name=agent_name)
    pending_first = Case(
        When(status=PromotionRequest.Status.PENDING, then=Value(0)),
        default=Value(1),
        output_field=IntegerField(),
    )
    return rows.order_by(pending_first, "-created_at")


def promotion_get(*, request_id: uuid.UUID) -> PromotionRequest:
    """One request with its approvals; PromotionNotFound if there is none."""
    row = PromotionRequest.objects.prefetch_related("approvals").filter(pk=request_id).first()
    if row is None:
        raise PromotionNotFound(f"no promotion request {request_id}")
    return row


def promotion_payload(row: PromotionRequest) -> dict[str, object]:
    """A request as API.md lists it."""
    return {
        "id": str(row.pk),
        "agent": row.agent_name,
        "label": row.label,
        "from_revision": row.from_revision,
        "to_revision": row.to_revision,
        "requested_by": row.requested_by,
        "reason": row.reason,
        "required_approvals": row.required_approvals,
        "approvals": [{"by": a.by, "at": iso(a.at), "comment": a.comment} for a in row.approvals.all()],
        "widened": row.widened,
        "permissions": row.permissions,
        "status": row.status,
        "decided_by": row.decided_by,
        "decision_comment": row.decision_comment,
        "decided_at": iso(row.decided_at) if row.decided_at else None,
        "created_at": iso(row.created_at),
    }
