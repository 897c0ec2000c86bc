"""The operator's branding, read once from the settings: name, logo, accent colour, footer
links, contact and privacy text, and where pages live (``root``).

Colours are checked here, not trusted: whatever accent the operator picks, the text on it
and the links drawn in it keep WCAG AA contrast (4.5:1) by being darkened as needed.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from attester.config import Settings

WHITE = "#ffffff"
INK = "#1a1d21"  # body text
TINTED = "#eceff3"  # the darkest background links sit on (notes); style.css --neutral-bg
AA = 4.5

_LOGO_TYPES = {
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".webp": "image/webp",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".ico": "image/x-icon",
}


def _rgb(colour: str) -> tuple[int, int, int]:
    h = colour.lstrip("#")
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(max(0.0, min(255.0, c))):02x}" for c in rgb)


def luminance(colour: str) -> float:
    """Relative luminance (WCAG 2.1)."""

    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in _rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def darkened(colour: str, against: str = WHITE, minimum: float = AA) -> str:
    """``colour`` mixed towards black until it reaches ``minimum`` contrast on ``against``."""
    r, g, b = _rgb(colour)
    for step in range(21):
        f = 1 - step / 20
        candidate = _hex((r * f, g * f, b * f))
        if contrast(candidate, against) >= minimum:
            return candidate
    return "#000000"


def text_on(background: str) -> str:
    """White or ink, whichever reads better on ``background``."""
    return WHITE if contrast(WHITE, background) >= contrast(INK, background) else INK


@dataclass(frozen=True)
class Site:
    name: str
    public_url: str  # scheme://host[:port][/prefix], as people reach us
    root: str  # the path part of public_url: every page link starts with it
    accent: str  # buttons' background
    on_accent: str  # text on buttons
    link: str  # links and focus details (accent with AA contrast on white)
    footer_links: tuple[tuple[str, str], ...]
    logo: Path | None
    logo_type: str
    contact: str
    privacy: str

    @property
    def host(self) -> str:
        return urlsplit(self.public_url).netloc

    @property
    def origin(self) -> str:
        parts = urlsplit(self.public_url)
        return f"{parts.scheme}://{parts.netloc}"

    @classmethod
    def from_settings(cls, settings: Settings) -> Site:
        public = settings.public_url
        # The accent as given when it carries white text at AA; otherwise darkened until
        # it does (a pale accent would make buttons unreadable).
        accent = settings.web_accent_color
        if contrast(text_on(accent), accent) < AA:
            accent = darkened(accent)
        logo = Path(settings.web_logo_file) if settings.web_logo_file else None
        logo_type = ""
        if logo is not None:
            logo_type = _LOGO_TYPES.get(logo.suffix.lower()) or (
                mimetypes.guess_type(logo.name)[0] or "application/octet-stream"
            )
        return cls(
            name=settings.service_name,
            public_url=public,
            root=urlsplit(public).path.rstrip("/"),
            accent=accent,
            on_accent=text_on(accent),
            link=darkened(settings.web_accent_color, against=TINTED),
            footer_links=settings.web_footer_links,
            logo=logo,
            logo_type=logo_type,
            contact=settings.web_contact.strip(),
            privacy=settings.web_privacy_statement.strip(),
        )
