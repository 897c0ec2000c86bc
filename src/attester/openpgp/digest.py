"""The SKS key digest, by which SKS and Hockeypuck name a stored key in reconciliation and
answer ``op=hget`` (see docs/specs hkp.md, "Key digest").

MD5 here is an identifier both servers agreed on in 2003, not a security measure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from attester.openpgp._packets import RawPacket, split_packets


def sks_digest(data: bytes) -> str:
    """MD5 over the packets of ``data`` (one binary certificate) sorted by (tag, body), each
    contributing ``uint32 BE tag ‖ uint32 BE body length ‖ body``; lowercase hex.

    Header formats do not matter, only tags and bodies, so the same packets give the same
    digest however they were framed (SKS ``keyHash.ml``: ``packet_cmp`` and ``concat``).
    """
    return _digest_packets(split_packets(data))


def _digest_packets(packets: Iterable[RawPacket]) -> str:
    """``sks_digest`` of already split packets."""
    h = hashlib.md5(usedforsecurity=False)
    for tag, body in sorted(packets):
        h.update(tag.to_bytes(4, "big"))
        h.update(len(body).to_bytes(4, "big"))
        h.update(body)
    return h.hexdigest()
