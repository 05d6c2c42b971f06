"""Everything that talks to Nova's REST API, in one room.

- ``client``: the only module that sends HTTP to Nova (typed async client, stamina retries,
  redirect and size limits, ``UnsafeIdError`` for ids that are not plain path segments);
- ``schema``: Nova's response shapes, validated and converted to ``storage.records`` values
  (pure: no I/O);
- ``ratelimit``: the client-side token bucket that keeps a run under Nova's read limit.

The client's public names are re-exported here: ``from receiver.nova import NovaClient``.
"""

from __future__ import annotations

from receiver.nova.client import (
    MAX_RETRY_AFTER,
    BatchSnapshot,
    CreatedBatch,
    LegacyBatch,
    LegacyJobRef,
    NovaClient,
    NovaStats,
    UnsafeIdError,
    build_http_client,
    normalize_status,
    parse_retry_after,
)

__all__ = [
    "MAX_RETRY_AFTER",
    "BatchSnapshot",
    "CreatedBatch",
    "LegacyBatch",
    "LegacyJobRef",
    "NovaClient",
    "NovaStats",
    "UnsafeIdError",
    "build_http_client",
    "normalize_status",
    "parse_retry_after",
]
