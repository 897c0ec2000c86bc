"""ASCII armor out, and armored uploads in."""

from __future__ import annotations

from attester.openpgp import (
    ParsedCert,
    armor,
    armor_joined,
    armor_joined_size,
    parse_certificate,
    parse_certificates,
    parse_keyring,
)
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


def test_joined_armor_is_one_block_with_the_checksum_of_all_of_it() -> None:
    """``armor_joined`` (HKP and VKS answers holding several keys) makes exactly the block
    ``armor`` makes of the concatenated keys; of one key, exactly its own stored block,
    which is why one key's answer can be that block as it is."""
    a, b = (f.join(f.simple_cert(n)[1]) for n in (b"A <a@example.org>", b"B <b@example.org>"))
    one, two = armor(a), armor(b)
    assert "".join(armor_joined([one])) == one
    joined = "".join(armor_joined([one, two]))
    assert joined == armor(a + b)
    assert len(joined) == armor_joined_size([one, two])
    assert [c.data for c in parse_certificates(joined.encode())] == [
        parse_certificate(a).data,
        parse_certificate(b).data,
    ]
