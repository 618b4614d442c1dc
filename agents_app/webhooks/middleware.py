"""Wakes webhook delivery after a write request, so events reach receivers in milliseconds.

Why here and not in the agent services or the event store: the store has no "events
committed" hook yet, and the services must not learn about webhooks. Every write that comes
through the web (API and admin) passes this point after its transaction committed (no
ATOMIC_REQUESTS). Writes from elsewhere (management commands, imports) are picked up by the
beat schedule, once a second.
"""

import logging

from agents_app.webhooks.services import webhooks_wake

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class WebhookWakeMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.method not in SAFE_METHODS and response.status_code < 400:
            try:
                webhooks_wake()
            except Exception:  # delivery is the beat's job too; the write already succeeded
                logger.warning("could not wake webhook delivery", exc_info=True)
        return response
