"""Errors of the promotion path; each carries the HTTP status the API answers with."""

from agents_app.exceptions import AgentError


class PromotionProblem(AgentError):
    """Base: `status` and `code` are the problem body's (agents_app.api.errors)."""

    status = 409
    code = "promotion-state"
    title = "Not possible in this state"
    field: str | None = None

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        if field is not None:
            self.field = field


class LabelProtected(PromotionProblem):
    """A protected label moves only through an approved promotion request."""

    code = "label-protected"
    title = "Label is protected"


class PromotionNotFound(PromotionProblem):
    status = 404
    code = "not-found"
    title = "Not found"


class PromotionForbidden(PromotionProblem):
    """Approving one's own request, approving twice, withdrawing someone else's."""

    status = 403
    code = "four-eyes"
    title = "Forbidden"


class PromotionFinished(PromotionProblem):
    """The request was applied, rejected or withdrawn: nothing more can happen to it."""

    code = "promotion-finished"
    title = "Request is finished"


class PolicyInvalid(PromotionProblem):
    status = 422
    code = "validation"
    title = "Invalid request body"
