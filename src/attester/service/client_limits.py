"""Rate limits per client address (issue 10 items 8 and 21), with the ``limits`` library.

Two kinds of request are counted per client address (the address the request came from,
after uvicorn applied ``forwarded_allow_ips``):

- requests that can make the server send mail (uploads, verification and management
  requests): ``rate_limit_mail_requests``, on top of the per-mailbox, per-key and
  per-request mail ceilings counted in the database;
- text searches (HKP ``search=`` words, the web search box), which could otherwise page
  through every published address: ``rate_limit_text_search``.

The counters live in ``rate_limit_storage_url``: ``memory://`` (one process), or
``redis://host:port`` so that every app server behind a load balancer shares them. When the
storage cannot be reached the request is let through and the failure logged: an outage of
Redis must not take uploads and searches down (the database-backed mail ceilings still
hold).
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from attester.service.errors import RateLimited

log = logging.getLogger(__name__)


class ClientLimits:
    def __init__(
        self,
        storage_url: str,
        mail_requests: str,
        text_search: str,
        key_prefix: str = "attester",
    ) -> None:
        options: dict[str, str | float] = {}
        if storage_url.startswith(("redis://", "rediss://", "redis+")):
            # A Redis that does not answer must not hold requests: see ``_hit``.
            options.update(key_prefix=key_prefix, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.storage = storage_from_string(storage_url, **options)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.mail_requests = parse(mail_requests)
        self.text_search = parse(text_search)

    def mail_request(self, client: str) -> None:
        """Count a request that can send mail; ``RateLimited`` beyond the limit."""
        self._hit(self.mail_requests, "mail", client, "requests that send email")

    def search(self, client: str) -> None:
        """Count a text search; ``RateLimited`` beyond the limit."""
        self._hit(self.text_search, "search", client, "text searches")

    def _hit(self, item: RateLimitItem, kind: str, client: str, what: str) -> None:
        if not client:
            return  # no peer address (a Unix socket): nothing to count by
        try:
            if self.limiter.hit(item, kind, client):
                return
            stats = self.limiter.get_window_stats(item, kind, client)
        except Exception:  # the storage's own errors (redis.ConnectionError...)
            log.warning("rate limit storage unavailable; %s not limited", what, exc_info=True)
            return
        wait = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(
            f"Too many {what} from your address (at most {_describe(item)}); "
            f"try again in {wait} seconds.",
            wait,
        )

    def reset(self) -> None:
        """Forget every counter (tests)."""
        self.storage.reset()


def _describe(item: RateLimitItem) -> str:
    unit = item.GRANULARITY.name
    per = f"{item.multiples} {unit}s" if item.multiples > 1 else unit
    return f"{item.amount} per {per}"
