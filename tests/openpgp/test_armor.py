"""ASCII armor out, and armored uploads in."""

from __future__ import annotations

from attester.openpgp import ParsedCert, armor, parse_certificate, parse_keyring
from tests.openpgp import forge as f


def test_armor_is_a_public_key_block_ending_in_a_newline() -> None:
    _, packets = f.simple_cert(b"Alice <alice@example.org>")
    cert = parse_certificate(f.join(packets))
    text = armor(cert.data)
    assert text.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
    assert text.endswith("-----END PGP PUBLIC KEY BLOCK-----\n")
    assert parse_certificate(text.encode()).data == cert.data


def test_several_armored_blocks_in_a_mail() -> None:
    _, a = f.simple_cert(b"Alice <alice@example.org>")
    _, b = f.simple_cert(b"Bob <bob@example.org>")
    mail = (
        "Hi,\r\n\r\nhere are our keys.\r\n\r\n"
        + armor(f.join(a)).replace("\n", "\r\n")
        + "\r\nand\r\n\r\n"
        + armor(f.join(b))
        + "\r\n-- \r\nAlice\r\n"
    )
    results = parse_keyring(mail.encode())
    assert all(isinstance(r, ParsedCert) for r in results)
    assert [r.user_ids[0].text for r in results if isinstance(r, ParsedCert)] == [
        "Alice <alice@example.org>",
        "Bob <bob@example.org>",
    ]
