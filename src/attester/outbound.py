"""What every outgoing HTTP client shares: one TLS context per process.

httpx builds a default context for each client made without one, and building it reads the
whole CA bundle: about 38 ms of CPU, paid three times on every app start and once by every
``attester`` command that talks to a peer. A context holds settings and trusted
certificates, no connection state, so one is shared by every client and thread. It is made
on first use, from the environment as httpx would (``SSL_CERT_FILE``, ``SSL_CERT_DIR``)."""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's context for verifying the servers it connects to."""
    return httpx.create_ssl_context()
