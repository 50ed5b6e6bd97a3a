"""REST paths built from ids: every segment percent-quoted, so an id can never add a path level.

``api_path("devices", "a/../b", "commands")`` is ``/api/devices/a%2F..%2Fb/commands``: the
server gets one segment (and refuses the id), never ``/api/devices/b/commands``. ``#`` and ``?``
are quoted too, so nothing of an id becomes a fragment or a query string.
"""

from __future__ import annotations

from urllib.parse import quote


def api_path(*segments: str) -> str:
    return "/api/" + "/".join(quote(segment, safe="") for segment in segments)
