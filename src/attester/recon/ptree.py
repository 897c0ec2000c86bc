"""The prefix tree's arithmetic (pure, no I/O): how elements map to nodes, and what a
node holds.

Parameters are SKS's and Hockeypuck's: bitquantum 2, so each node has 4 children and
depth d is chosen by bits 2d and 2d+1 of an element; mbar 5, so 6 sample values per
node. The bits of an element are its digest bytes read MSB-first (the 17-byte wire form
of the element is the digest followed by a zero byte, read the same way), so a node's
elements are exactly the digests in one contiguous byte range.

A prefix is written here as a string of base-4 digits, one per level ("" is the root,
"21" its third child's second child); on the wire it is a bit string.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from attester.recon.field import DIGEST_BYTES, POINTS

BITQUANTUM = 2
MBAR = 5
NUM_SAMPLES = len(POINTS)
SPLIT = 50  # a leaf holding more elements than this splits (SKS: ptree_thresh_mult * mbar)
JOIN = 25  # an internal node holding this many or fewer becomes a leaf again
# Below this many elements a node's elements are sent whole instead of its sample values
# (SKS: recon_thresh_mult * mbar); a leaf's always are.
FULL_BELOW = 150
MAX_DEPTH = DIGEST_BYTES * 8 // BITQUANTUM  # 64 levels: a full path names one digest

EMPTY_SVALUES: tuple[int, ...] = (1,) * NUM_SAMPLES

_QUAD = [
    "".join(str((b >> s) & 3) for s in (6, 4, 2, 0)) for b in range(256)
]  # a byte as four base-4 digits, most significant first


def path(digest: bytes) -> str:
    """The full 64-digit path of an element (its digest bytes, MSB-first, in base 4)."""
    return "".join(_QUAD[b] for b in digest)


def child_index(digest: bytes, depth: int) -> int:
    """Which child of its depth-``depth`` ancestor an element falls into."""
    return (digest[depth >> 2] >> (6 - 2 * (depth & 3))) & 3


def children(prefix: str) -> list[str]:
    return [prefix + c for c in "0123"]


def bounds(prefix: str) -> tuple[bytes, bytes | None]:
    """The digests under ``prefix``: from ``lo`` (inclusive) to ``hi`` (exclusive; None
    when the range runs to the end)."""
    bits = BITQUANTUM * len(prefix)
    v = int(prefix, 4) if prefix else 0
    shift = 8 * DIGEST_BYTES - bits
    lo = (v << shift).to_bytes(DIGEST_BYTES, "big")
    top = (v + 1) << shift
    hi = None if top >> (8 * DIGEST_BYTES) else top.to_bytes(DIGEST_BYTES, "big")
    return lo, hi


def to_bitstring(prefix: str) -> tuple[int, bytes]:
    """The wire form: number of bits, and the bits MSB-first, zero-padded to bytes."""
    nbits = BITQUANTUM * len(prefix)
    nbytes = (nbits + 7) // 8
    v = int(prefix, 4) if prefix else 0
    return nbits, (v << (8 * nbytes - nbits)).to_bytes(nbytes, "big") if nbytes else b""


class BadPrefix(ValueError):
    pass


def from_bitstring(nbits: int, data: bytes) -> str:
    """The prefix a wire bit string names; ``BadPrefix`` for one no tree of ours has."""
    if nbits % BITQUANTUM or not 0 <= nbits <= BITQUANTUM * MAX_DEPTH:
        raise BadPrefix(f"a prefix of {nbits} bits is not a node of a bitquantum-2 tree")
    nbytes = (nbits + 7) // 8
    if len(data) < nbytes:
        raise BadPrefix(f"a prefix of {nbits} bits needs {nbytes} bytes, got {len(data)}")
    if not nbits:
        return ""
    v = int.from_bytes(data[:nbytes], "big") >> (8 * nbytes - nbits)
    return _base4(v, nbits // BITQUANTUM)


def _base4(v: int, digits: int) -> str:
    out = []
    for _ in range(digits):
        out.append("0123"[v & 3])
        v >>= 2
    return "".join(reversed(out))


@dataclass(frozen=True)
class Node:
    """One node as reconciliation reads it: how many elements lie below it, their
    sample values, and whether it is a leaf (holds its elements itself)."""

    prefix: str
    size: int
    svalues: tuple[int, ...]
    leaf: bool


class TreeView(Protocol):
    """Read access to a prefix tree, in bulk (a session asks for up to 100 nodes at a
    time). Nodes that do not exist are left out of the answer."""

    def nodes(self, prefixes: Collection[str]) -> dict[str, Node]: ...

    def elements(self, prefixes: Collection[str]) -> dict[str, set[int]]:
        """All elements under each prefix, as field elements."""
        ...
