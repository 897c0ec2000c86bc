"""Arithmetic in GF(p) for SKS reconciliation (pure, no I/O).

An element of the reconciled set is a key's 16-byte SKS digest read as a little-endian
integer; every such integer is below p, the prime SKS and Hockeypuck chose, so the
element *is* a field value. Plain Python integers serve for the sample values;
``decode`` does its polynomial work with FLINT (docs/federation.md, "Decoding: measured").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

P = 530512889551602322505127520352579437339
"""The field's order (SKS ``ZZp.order``, Hockeypuck ``P_SKS``); 129 bits, so an element
travels as 17 little-endian bytes."""

ELEMENT_BYTES = 17
DIGEST_BYTES = 16

# The sample points 0, -1, 1, -2, 2, -3 (SKS ``ZZp.points``): mbar + 1 = 6 of them, the
# first five to interpolate and the last to check the result.
POINTS: tuple[int, ...] = tuple(((i + 1) // 2) * (1 if i % 2 == 0 else -1) % P for i in range(6))


def element(digest: bytes) -> int:
    """The field element of a 16-byte digest (little-endian)."""
    return int.from_bytes(digest, "little")


def digest_of(z: int) -> bytes:
    """The 16-byte digest an element stands for; ``ValueError`` when ``z`` is no digest."""
    if not 0 <= z < 1 << (8 * DIGEST_BYTES):
        raise ValueError("not an element of the digest set")
    return z.to_bytes(DIGEST_BYTES, "little")


def factors(z: int) -> tuple[int, ...]:
    """What adding ``z`` multiplies a node's sample values by: (point_i - z) mod p."""
    return tuple((k - z) % P for k in POINTS)


def inverse(x: int) -> int:
    return pow(x, -1, P)


def sample_values(elements: Iterable[int]) -> tuple[int, ...]:
    """The sample values of a set: at each point, the product of (point - z)."""
    out = [1] * len(POINTS)
    for z in elements:
        for i, k in enumerate(POINTS):
            out[i] = out[i] * (k - z) % P
    return tuple(out)


def multiply(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """Pointwise product of two sample-value vectors."""
    return tuple(x * y % P for x, y in zip(a, b, strict=True))
