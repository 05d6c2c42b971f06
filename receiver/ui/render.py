"""The dashboard's Jinja2 environment: autoescape always on, strict undefined, our filters.

Autoescape is on for every template whatever its name: stored text (verdicts, raw bodies,
ids) comes from webhooks, and a ``<script>`` in it must render as text.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from receiver.ui import views


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("receiver.ui", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = views.when
    env.filters["duration"] = views.duration
    env.filters["printable"] = views.printable
    return env


def render(template: str, context: Mapping[str, Any]) -> str:
    return environment().get_template(template).render(context)
