"""Raw packet framing and ASCII armor: the layer below Sequoia that sees every packet."""

from __future__ import annotations

import base64

import pytest

from attester.openpgp import Unparsable
from attester.openpgp._packets import (
    RawPacket,
    dearmor,
    decode,
    encode_packet,
    split_packets,
)


@pytest.mark.parametrize("size", [0, 1, 191, 192, 8383, 8384, 70000])
def test_new_format_lengths_round_trip(size: int) -> None:
    body = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert split_packets(encode_packet(13, body)) == [RawPacket(13, body)]


@pytest.mark.parametrize(
    ("header", "body"),
    [
        (bytes((0x80 | 13 << 2 | 0, 3)), b"abc"),  # one-octet length
        (bytes((0x80 | 13 << 2 | 1, 0, 3)), b"abc"),  # two-octet length
        (bytes((0x80 | 13 << 2 | 2, 0, 0, 0, 3)), b"abc"),  # four-octet length
        (bytes((0x80 | 13 << 2 | 3,)), b"abc"),  # indeterminate: to the end
    ],
)
def test_legacy_format(header: bytes, body: bytes) -> None:
    assert split_packets(header + body) == [RawPacket(13, body)]


def test_partial_body_lengths_are_reassembled() -> None:
    body = bytes(range(256)) * 3 + b"tail"  # 772 bytes: 512 + 256 + 4
    framed = bytes((0xC0 | 17, 0xE0 + 9)) + body[:512]  # partial chunk of 2**9
    framed += bytes((0xE0 + 8,)) + body[512:768]  # partial chunk of 2**8
    framed += bytes((4,)) + body[768:]  # final chunk, definite length
    assert split_packets(framed + encode_packet(2, b"x")) == [
        RawPacket(17, body),
        RawPacket(2, b"x"),
    ]


def test_private_tags_are_kept_for_the_caller_to_judge() -> None:
    data = encode_packet(61, b"private") + encode_packet(60, b"")
    assert [p.tag for p in split_packets(data)] == [61, 60]


@pytest.mark.parametrize(
    "data",
    [
        bytes((0xC0 | 13, 10)) + b"short",  # body shorter than its length
        bytes((0xC0 | 13, 0xFF, 0, 0)),  # truncated five-octet length
        bytes((0xC0 | 13, 200)),  # truncated two-octet length
        bytes((0xC0 | 13, 0xE5)) + b"x",  # partial chunk running past the end
        bytes((0x80 | 13 << 2 | 1, 0)),  # truncated legacy length
    ],
)
def test_truncated_packets_are_unparsable(data: bytes) -> None:
    with pytest.raises(Unparsable, match="truncated"):
        split_packets(data)


def test_a_byte_without_the_packet_bit_is_not_openpgp() -> None:
    with pytest.raises(Unparsable, match="not OpenPGP"):
        split_packets(encode_packet(13, b"a") + b"\x13junk")


def _armor(data: bytes, kind: str = "PUBLIC KEY BLOCK", headers: str = "") -> str:
    b64 = base64.b64encode(data).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return (
        f"-----BEGIN PGP {kind}-----\n{headers}\n" + "\n".join(lines) + "\n=AAAA\n"
        f"-----END PGP {kind}-----\n"
    )


def test_dearmor_several_blocks_with_text_around() -> None:
    one, two = encode_packet(6, b"one"), encode_packet(6, b"two")
    text = (
        "Hello, here are my keys:\n\n"
        + _armor(one, headers="Version: Test\nComment: a: b\n")
        + "\nand the other one\r\n"
        + _armor(two).replace("\n", "\r\n")
        + "-- \nsignature\n"
    )
    assert dearmor(text.encode()) == one + two
    assert decode(("\ufeff" + text).encode()) == one + two  # a BOM in front is text, not binary


def test_binary_input_is_taken_as_is() -> None:
    data = encode_packet(6, b"key")
    assert decode(data) == data


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("just some text", "neither binary OpenPGP nor"),
        ("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n", "no END line"),
        (
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAA!A\n-----END PGP PUBLIC KEY BLOCK-----\n",
            "base64",
        ),
        (
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP MESSAGE-----\n",
            "different END line",
        ),
    ],
)
def test_bad_armor_is_unparsable(text: str, message: str) -> None:
    with pytest.raises(Unparsable, match=message):
        decode(text.encode())
