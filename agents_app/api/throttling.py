"""API throttling that keeps answering while Redis, which holds the shared counters, is down.

DRF's throttles read and write their counters in the default cache (Redis when configured).
Without this, a Redis outage made every authenticated request a 500 in the throttle, before
the view ran: writes failed although the store and read-your-writes need no broker
(tests/reliability/test_faults.py). During an outage the counters are kept per web process
instead, so the limit still holds, only looser by the number of processes.
"""

import logging

from django.core.cache.backends.locmem import LocMemCache
from redis.exceptions import RedisError
from rest_framework import throttling

logger = logging.getLogger(__name__)

_PROCESS_COUNTERS = LocMemCache("api-throttle-fallback", {"OPTIONS": {"MAX_ENTRIES": 10_000}})


class _CountLocallyWhenRedisIsDown(throttling.SimpleRateThrottle):
    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except RedisError as exc:
            logger.warning("throttle counters unavailable (%s); counting in this process", exc)
            self.cache = _PROCESS_COUNTERS
            return super().allow_request(request, view)


class UserRateThrottle(_CountLocallyWhenRedisIsDown, throttling.UserRateThrottle):
    """DRF's per-user throttle, counting in this process while Redis is unreachable."""


class AnonRateThrottle(_CountLocallyWhenRedisIsDown, throttling.AnonRateThrottle):
    """DRF's per-address throttle, counting in this process while Redis is unreachable."""
