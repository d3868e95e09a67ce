"""One HTTP client per caller, allowed many requests at once.

tornado's shared client runs 10 requests at a time and queues the rest; 50 users submitting at
once would wait in that queue, so each of our clients gets its own, larger limit.
"""

from __future__ import annotations

from tornado.httpclient import AsyncHTTPClient

MAX_CLIENTS = 128


def http_client() -> AsyncHTTPClient:
    """A client of its own (made on first use, inside the running event loop)."""
    return AsyncHTTPClient(force_instance=True, max_clients=MAX_CLIENTS)
