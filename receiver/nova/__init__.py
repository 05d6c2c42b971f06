"""Everything that talks to Nova's REST API, in one room.

- ``client``: the only module that sends HTTP to Nova (typed async client, stamina retries,
  redirect and size limits, ``UnsafeIdError`` for ids that are not plain path segments);
- ``schema``: Nova's response shapes, validated and converted to ``storage.records`` values
  (pure: no I/O);
- ``ratelimit``: the client-side token bucket that keeps a run under Nova's read limit.

The client's public names are re-exported here: ``from receiver.nova import NovaClient``.
"""

from __future__ import annotations

from receiver.nova import client
from receiver.nova.client import *  # noqa: F403 - exactly the names in the client's __all__

# One list of public names, kept in the client: a copy here would have to follow every change there.
__all__ = client.__all__
