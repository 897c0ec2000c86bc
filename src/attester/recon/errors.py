"""Errors of reconciliation. Each carries ``outcome``, the label it is counted under in
``attester_recon_sessions_total``.

    ReconError
    ├── ConfigRefused     one side refused the other's configuration (``by_peer`` says
    │                     which; ``reason`` is the refusing side's own sentence)
    ├── NotAPartner       a connection from an address no configured peer has
    └── PeerError         the peer misbehaved or went away; the session ends, the tree
        │                 is untouched, and what was learnt before is still recovered
        ├── ProtocolError   garbage, or a message that makes no sense at this point
        ├── LimitExceeded   an oversized message, too many elements, a session too long
        ├── PeerTimeout     no answer within the read timeout
        └── PeerUnreachable the connection failed or closed early
"""

from __future__ import annotations


class ReconError(Exception):
    outcome = "error"


class ConfigRefused(ReconError):
    outcome = "refused"

    def __init__(self, reason: str, *, by_peer: bool, ours: str | None = None) -> None:
        """``reason`` is the refusing side's sentence (the peer's when it refused);
        ``ours`` is ours when both sides refused."""
        if by_peer:
            text = f"the peer refused our configuration: {reason}"
            if ours:
                text += f" (and we refused its: {ours})"
        else:
            text = f"we refused the peer's configuration: {reason}"
        super().__init__(text)
        self.reason = reason
        self.by_peer = by_peer
        self.ours = ours if by_peer else reason


class NotAPartner(ReconError):
    outcome = "not_a_partner"


class PeerError(ReconError):
    pass


class ProtocolError(PeerError):
    outcome = "protocol_error"


class LimitExceeded(PeerError):
    outcome = "limit"

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit  # the metrics label: message_bytes, elements, session_seconds...


class PeerTimeout(PeerError):
    outcome = "timeout"


class PeerUnreachable(PeerError):
    outcome = "unreachable"
