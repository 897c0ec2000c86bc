"""A prefix tree held in memory, built once from a set of digests (the same shape rules
as the database tree): a second, independent side for protocol tests."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from attester.recon.field import element, multiply, sample_values
from attester.recon.ptree import EMPTY_SVALUES, MAX_DEPTH, SPLIT, Node, bounds, children


class MemoryTree:
    def __init__(self, digests: Iterable[bytes]) -> None:
        self.digests = sorted(set(digests))
        self._nodes: dict[str, Node] = {}
        self._build("", self.digests)

    def _build(self, prefix: str, digests: list[bytes]) -> Node:
        if len(digests) <= SPLIT or len(prefix) >= MAX_DEPTH:
            node = Node(prefix, len(digests), sample_values(map(element, digests)), True)
        else:
            size, sv = 0, EMPTY_SVALUES
            for kid in children(prefix):
                lo, hi = bounds(kid)
                child = self._build(kid, [d for d in digests if lo <= d and (hi is None or d < hi)])
                size, sv = size + child.size, multiply(sv, child.svalues)
            node = Node(prefix, size, sv, False)
        self._nodes[prefix] = node
        return node

    def nodes(self, prefixes: Collection[str]) -> dict[str, Node]:
        return {p: self._nodes[p] for p in prefixes if p in self._nodes}

    def elements(self, prefixes: Collection[str]) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        for p in prefixes:
            lo, hi = bounds(p)
            out[p] = {element(d) for d in self.digests if lo <= d and (hi is None or d < hi)}
        return out
