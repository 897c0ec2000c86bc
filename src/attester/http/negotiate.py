"""Who is asking: a browser that wants a page, or an API client that wants JSON.

Only the ``Accept`` header decides. Browsers send ``text/html`` first with the highest
weight; curl, httpx and the FlowCrypt clients send ``*/*`` or ``application/json``, which
never prefer HTML, so ``GET /`` keeps answering them ``{"alive": true}``.
"""

from __future__ import annotations

from starlette.requests import Request


def _ranges(accept: str) -> list[tuple[str, str, float]]:
    """``(type, subtype, q)`` per media range; malformed entries are skipped."""
    out: list[tuple[str, str, float]] = []
    for item in accept.split(",")[:50]:
        media, *params = (p.strip() for p in item.split(";"))
        kind, sep, sub = media.lower().partition("/")
        if not sep or not kind or not sub:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = max(0.0, min(1.0, float(value)))
                except ValueError:
                    q = 0.0
        out.append((kind, sub, q))
    return out


def quality(accept: str, media_type: str) -> float:
    """The weight ``accept`` gives ``media_type``: the q of the most specific matching range
    (RFC 9110 12.5.1), 0 when nothing matches."""
    kind, _, sub = media_type.partition("/")
    best, specificity = 0.0, -1
    for k, s, q in _ranges(accept):
        if (k, s) == (kind, sub):
            level = 2
        elif k == kind and s == "*":
            level = 1
        elif (k, s) == ("*", "*"):
            level = 0
        else:
            continue
        if level > specificity:
            best, specificity = q, level
    return best


def prefers_html(request: Request) -> bool:
    """True when ``text/html`` weighs more than JSON: a browser navigating here."""
    accept = request.headers.get("accept", "")
    html = quality(accept, "text/html")
    return html > 0 and html > quality(accept, "application/json")
