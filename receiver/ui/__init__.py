"""The read-only dashboard under ``/ui``: server-rendered pages over the stored results.

- ``auth``: one-time login links and the session they open (pure, plus spent nonces)
- ``paging``: opaque keyset cursors and query-parameter checks (pure)
- ``views``: convergence state, lag percentiles, body pretty-printing (pure)
- ``charts``: SVG charts rendered on the server (pure)
- ``render``: the Jinja2 environment (autoescape on)
- ``routes``: the Starlette routes, the session middleware and the response headers
"""
