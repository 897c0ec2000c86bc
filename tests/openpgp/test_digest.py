"""The SKS key digest (docs/specs hkp.md, "Key digest")."""

from __future__ import annotations

import hashlib
import struct

from attester.openpgp import parse_certificate, sks_digest
from tests.openpgp import forge as f


def test_known_vector() -> None:
    data = f.packet(13, b"b") + f.packet(6, b"key") + f.packet(13, b"a")
    # Sorted by (tag, body): (6, key), (13, a), (13, b); each as tag, length, body.
    expected = hashlib.md5(
        struct.pack(">II", 6, 3)
        + b"key"
        + struct.pack(">II", 13, 1)
        + b"a"
        + struct.pack(">II", 13, 1)
        + b"b"
    ).hexdigest()
    assert sks_digest(data) == expected
    assert len(expected) == 32 and expected == expected.lower()


def test_header_format_and_order_do_not_matter() -> None:
    packets = [(6, b"key"), (13, b"uid"), (2, b"\x04sig" * 100)]
    new = f.join(packets)
    legacy = b"".join(f.packet(t, b, legacy=True) for t, b in reversed(packets))
    assert sks_digest(new) == sks_digest(legacy)
    # Sorting is by tag first, then by the body bytes.
    assert sks_digest(f.join([(13, b"b"), (13, b"a")])) == sks_digest(
        f.join([(13, b"a"), (13, b"b")])
    )


def test_parsed_certificates_carry_the_digest_of_their_data() -> None:
    _, packets = f.simple_cert(b"Alice <alice@example.org>")
    cert = parse_certificate(f.join(packets))
    assert cert.digest == sks_digest(cert.data)
    # Sequoia's canonical order differs from the upload's; the digest only sees the packets.
    assert cert.digest == sks_digest(f.join(packets))
