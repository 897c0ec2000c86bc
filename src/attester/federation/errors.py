"""Errors of federation. ``httpx`` exceptions are converted to these in one place
(``upstream._mapped``); nothing above this package sees an ``httpx`` exception.

    FederationError
    ├── UpstreamError            an upstream gave no usable answer
    │   ├── UpstreamTimeout      no answer within the time allowed
    │   ├── UpstreamUnreachable  no connection (refused, DNS, TLS, reset)
    │   ├── UpstreamRefused      an HTTP status other than 200 and 404, or an oversized body
    │   └── CircuitOpen          not asked: it failed too often just now
    └── DumpError                a keyserver dump cannot be read
        └── DumpUnreadable       not OpenPGP (nor gzip or bzip2 of it), or broken framing
"""

from __future__ import annotations


class FederationError(Exception):
    """Base of every error raised by ``attester.federation``; the message is a sentence."""


class UpstreamError(FederationError):
    def __init__(self, upstream: str, message: str) -> None:
        super().__init__(f"{upstream}: {message}")
        self.upstream = upstream


class UpstreamTimeout(UpstreamError):
    pass


class UpstreamUnreachable(UpstreamError):
    pass


class UpstreamRefused(UpstreamError):
    pass


class CircuitOpen(UpstreamError):
    pass


class DumpError(FederationError):
    pass


class DumpUnreadable(DumpError):
    pass
