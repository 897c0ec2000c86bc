"""The SKS reconciliation prefix tree, kept in the database (docs/federation.md,
"Reconciliation").

``recon_elements`` holds the SKS digest of every stored certificate; ``recon_nodes`` the
prefix tree over them (``attester.recon.ptree``). Both change in the same transaction as
``certs.digest``: a write step calls ``WriteTx.recon.change(removed=..., added=...)`` where
it writes a digest, and ``KeyStore.write`` calls ``apply()`` once before committing, so a
batch of 500 imported keys rewrites each touched node once, not once per key.

``apply`` makes the tree match the stored digests it was told about, whatever the calls
said: a digest is an element exactly while some certificate has it. So a repeated or
cancelled change does no harm. On PostgreSQL it takes a transaction-level advisory lock
first, which serialises tree updates between app servers; it runs last in the
transaction, after every certificate row lock, so it cannot take part in a deadlock.
(SQLite's ``BEGIN IMMEDIATE`` already serialises writers.)

Reads (``ReconStore``) serve reconciliation sessions, in bulk; ``rebuild`` builds the tree
from ``certs`` streaming (memory stays flat), and ``check`` verifies it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, insert, or_, select, text, update

from attester.recon.field import (
    ELEMENT_BYTES,
    P,
    element,
    factors,
    inverse,
    multiply,
    sample_values,
)
from attester.recon.ptree import (
    EMPTY_SVALUES,
    JOIN,
    MAX_DEPTH,
    NUM_SAMPLES,
    SPLIT,
    Node,
    bounds,
    child_index,
    children,
    path,
)
from attester.store.db import Database
from attester.store.schema import certs, recon_elements, recon_nodes

_LOCK_KEY = 7412396  # pg_advisory_xact_lock key of tree updates (db.upgrade uses 7412395)
_CHUNK = 500  # values per IN (...) list


def pack_svalues(svalues: Iterable[int]) -> bytes:
    return b"".join(v.to_bytes(ELEMENT_BYTES, "little") for v in svalues)


def unpack_svalues(data: bytes) -> tuple[int, ...]:
    return tuple(
        int.from_bytes(data[i : i + ELEMENT_BYTES], "little")
        for i in range(0, ELEMENT_BYTES * NUM_SAMPLES, ELEMENT_BYTES)
    )


def _node(row: Any) -> Node:
    return Node(row.prefix, int(row.size), unpack_svalues(bytes(row.svalues)), bool(row.leaf))


def _chunks(items: list[Any], n: int = _CHUNK) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _in_range(prefix: str) -> Any:
    lo, hi = bounds(prefix)
    col = recon_elements.c.element
    return and_(col >= lo, col < hi) if hi is not None else col >= lo


def _digest_order(conn: Connection) -> Any:
    """``certs.digest`` in byte order (hex digits compare like their bytes only in the
    C collation; PostgreSQL's default may differ)."""
    if conn.dialect.name == "postgresql":
        return certs.c.digest.collate("C")
    return certs.c.digest


@dataclass
class _MNode:
    """A node being changed by ``apply``."""

    prefix: str
    size: int
    svalues: tuple[int, ...]
    leaf: bool
    new: bool = False


class ReconTx:
    """Tree maintenance inside one ``KeyStore.write()`` transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._pg = conn.dialect.name == "postgresql"
        self._touched: dict[str, None] = {}  # hex digests whose membership may change

    def change(self, removed: str | None = None, added: str | None = None) -> None:
        """Note that a certificate's digest changed from ``removed`` to ``added`` (either
        may be None: a new certificate, a deleted one). Applied by ``apply``."""
        if removed == added:
            return
        for d in (removed, added):
            if d is not None:
                self._touched[d.lower()] = None

    def apply(self) -> None:
        """Bring the tree in step with the digests noted since the last call. Steps:
        1. serialise tree updates; 2. find which noted digests really enter or leave
        the set; 3. update ``recon_elements``; 4. update the nodes on their paths, top
        down, splitting leaves that grow past ``SPLIT`` and joining subtrees that shrink
        to ``JOIN``; 5. write each changed node once."""
        if not self._touched:
            return
        touched = list(self._touched)
        self._touched.clear()
        # 1.
        if self._pg:
            self.conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        # 2.
        stored: set[str] = set()
        present: set[bytes] = set()
        for chunk in _chunks(touched):
            stored.update(
                r[0]
                for r in self.conn.execute(select(certs.c.digest).where(certs.c.digest.in_(chunk)))
            )
            raw = [bytes.fromhex(d) for d in chunk]
            present.update(
                bytes(r[0])
                for r in self.conn.execute(
                    select(recon_elements.c.element).where(recon_elements.c.element.in_(raw))
                )
            )
        adds = [b for b in (bytes.fromhex(d) for d in touched if d in stored) if b not in present]
        removes = [
            b for b in (bytes.fromhex(d) for d in touched if d not in stored) if b in present
        ]
        if not adds and not removes:
            return
        # 3.
        if adds:
            self.conn.execute(insert(recon_elements), [{"element": b} for b in adds])
        for chunk in _chunks(removes):
            self.conn.execute(delete(recon_elements).where(recon_elements.c.element.in_(chunk)))
        # 4.
        _TreeUpdate(self.conn).run([(b, 1) for b in adds] + [(b, -1) for b in removes])


class _TreeUpdate:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.nodes: dict[str, _MNode] = {}
        self.dropped: list[str] = []  # roots of subtrees joined into their root

    def run(self, changes: list[tuple[bytes, int]]) -> None:
        root = self._load([""]).get("")
        if root is None:
            root = _MNode("", 0, EMPTY_SVALUES, True, new=True)
            self.nodes[""] = root
        level: dict[str, list[tuple[bytes, int]]] = {"": changes}
        while level:
            below: dict[str, list[tuple[bytes, int]]] = {}
            for prefix, changed in level.items():
                node = self.nodes[prefix]
                self._account(node, changed)
                depth = len(prefix)
                if node.leaf:
                    if node.size > SPLIT and depth < MAX_DEPTH:
                        self._split(node, self._elements(prefix))
                elif node.size <= JOIN:
                    self.dropped.append(prefix)
                    node.leaf = True
                else:
                    for d, sign in changed:
                        below.setdefault(prefix + "0123"[child_index(d, depth)], []).append(
                            (d, sign)
                        )
            loaded = self._load(list(below))
            for prefix in below:
                if prefix not in loaded:
                    # An internal node always has its four children; rebuild a lost one
                    # from its elements (which already include this transaction's).
                    elements = self._elements(prefix)
                    node = _MNode(
                        prefix, len(elements), sample_values(map(element, elements)), True, new=True
                    )
                    self.nodes[prefix] = node
                    below[prefix] = []  # its values are final
                    if node.size > SPLIT and len(prefix) < MAX_DEPTH:
                        self._split(node, elements)
            level = {p: c for p, c in below.items() if c}
        self._write()

    def _account(self, node: _MNode, changed: list[tuple[bytes, int]]) -> None:
        """Apply the changes of elements below ``node`` to its size and sample values."""
        if not changed:
            return
        gained = [1] * NUM_SAMPLES
        lost = [1] * NUM_SAMPLES
        for d, sign in changed:
            target = gained if sign > 0 else lost
            for i, f in enumerate(factors(element(d))):
                target[i] = target[i] * f % P
            node.size += sign
        if any(v != 1 for v in lost):
            gained = [g * inverse(x) % P for g, x in zip(gained, lost, strict=True)]
        node.svalues = multiply(node.svalues, gained)

    def _split(self, node: _MNode, elements: list[bytes]) -> None:
        """Turn a leaf into an internal node with four leaf children (and split those
        in turn while they hold too many)."""
        depth = len(node.prefix)
        groups: list[list[bytes]] = [[], [], [], []]
        for d in elements:
            groups[child_index(d, depth)].append(d)
        node.leaf = False
        for prefix, group in zip(children(node.prefix), groups, strict=True):
            kid = _MNode(prefix, len(group), sample_values(map(element, group)), True, new=True)
            self.nodes[prefix] = kid
            if kid.size > SPLIT and depth + 1 < MAX_DEPTH:
                self._split(kid, group)

    def _load(self, prefixes: list[str]) -> dict[str, _MNode]:
        out: dict[str, _MNode] = {}
        for chunk in _chunks(prefixes):
            for r in self.conn.execute(select(recon_nodes).where(recon_nodes.c.prefix.in_(chunk))):
                n = _node(r)
                out[n.prefix] = _MNode(n.prefix, n.size, n.svalues, n.leaf)
        self.nodes.update(out)
        return out

    def _elements(self, prefix: str) -> list[bytes]:
        q = select(recon_elements.c.element).where(_in_range(prefix))
        return [bytes(r[0]) for r in self.conn.execute(q)]

    def _write(self) -> None:
        for prefix in self.dropped:
            self.conn.execute(
                delete(recon_nodes).where(
                    recon_nodes.c.prefix.startswith(prefix, autoescape=True),
                    func.length(recon_nodes.c.prefix) > len(prefix),
                )
            )
        # Nodes of this update that a join just removed are not written back.
        live = [
            n
            for n in self.nodes.values()
            if not any(n.prefix.startswith(g) and len(n.prefix) > len(g) for g in self.dropped)
        ]
        rows = [
            {"p": n.prefix, "size": n.size, "leaf": n.leaf, "svalues": pack_svalues(n.svalues)}
            for n in live
        ]
        new = [r for r, n in zip(rows, live, strict=True) if n.new]
        old = [r for r, n in zip(rows, live, strict=True) if not n.new]
        if new:
            self.conn.execute(
                insert(recon_nodes),
                [
                    {
                        "prefix": r["p"],
                        "size": r["size"],
                        "leaf": r["leaf"],
                        "svalues": r["svalues"],
                    }
                    for r in new
                ],
            )
        if old:
            self.conn.execute(
                update(recon_nodes)
                .where(recon_nodes.c.prefix == bindparam("p"))
                .values(
                    size=bindparam("size"), leaf=bindparam("leaf"), svalues=bindparam("svalues")
                ),
                old,
            )


# ---- reads, rebuild, check


@dataclass
class CheckReport:
    """What ``ReconStore.check`` found; ``ok`` when the tree matches the stored digests."""

    elements: int = 0  # in the tree
    digests: int = 0  # distinct stored certificate digests
    nodes: int = 0
    missing: int = 0  # stored digests the tree lacks
    extra: int = 0  # tree elements no stored certificate has
    samples: list[str] = field(default_factory=list)  # a few of those, "missing <hex>"...
    problems: list[str] = field(default_factory=list)  # node-level differences (first 50)
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.problem_count)

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < 50:
            self.problems.append(text)


@dataclass(frozen=True)
class RebuildSummary:
    elements: int
    nodes: int


Progress = Callable[[int], None]  # elements done so far


class ReconStore:
    """The tree as reconciliation sessions read it (``attester.recon.ptree.TreeView``),
    and the operator's rebuild and check."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def nodes(self, prefixes: Collection[str]) -> dict[str, Node]:
        out: dict[str, Node] = {}
        with self.db.reader.connect() as conn:
            for chunk in _chunks(list(set(prefixes))):
                for r in conn.execute(select(recon_nodes).where(recon_nodes.c.prefix.in_(chunk))):
                    out[r.prefix] = _node(r)
        if "" in prefixes and "" not in out:
            out[""] = Node("", 0, EMPTY_SVALUES, True)  # the empty tree
        return out

    def elements(self, prefixes: Collection[str]) -> dict[str, set[int]]:
        wanted = set(prefixes)
        out: dict[str, set[int]] = {p: set() for p in wanted}
        lengths = sorted({len(p) for p in wanted})
        with self.db.reader.connect() as conn:
            for chunk in _chunks(sorted(wanted), 50):
                q = select(recon_elements.c.element).where(or_(*(_in_range(p) for p in chunk)))
                for r in conn.execute(q):
                    d = bytes(r[0])
                    full = path(d)
                    z = element(d)
                    for n in lengths:
                        if full[:n] in out:
                            out[full[:n]].add(z)
        return out

    def size(self) -> int:
        with self.db.reader.connect() as conn:
            v = conn.execute(select(recon_nodes.c.size).where(recon_nodes.c.prefix == "")).first()
        return int(v[0]) if v else 0

    def digest_count(self) -> int:
        with self.db.reader.connect() as conn:
            return int(conn.execute(select(func.count(func.distinct(certs.c.digest)))).scalar_one())

    def in_step(self) -> bool:
        """A cheap test whether the tree may be trusted: it holds as many elements as
        there are stored digests (``check`` is the thorough one)."""
        return self.size() == self.digest_count()

    # ---- rebuild
    def rebuild(self, progress: Progress | None = None) -> RebuildSummary:
        """Build the tree afresh from ``certs.digest`` in one transaction, reading the
        digests in order as a stream: at most SPLIT + 1 of them are held at a time."""
        with self.db.writer.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            conn.execute(delete(recon_nodes))
            conn.execute(delete(recon_elements))
            q = select(certs.c.digest).order_by(_digest_order(conn))
            rows = conn.execute(q.execution_options(stream_results=True, yield_per=2000))
            builder = _Builder(conn, _unique(bytes.fromhex(r[0]) for r in rows), progress)
            builder.build("")
            builder.flush()
            rows.close()
            return RebuildSummary(builder.count, builder.node_count)

    # ---- check
    def check(self) -> CheckReport:
        """Compare the tree with the stored digests: the element set, then every node's
        size, sample values and shape. Reads in order and walks the tree depth first,
        so memory stays flat."""
        report = CheckReport()
        with self.db.reader.connect() as conn:
            self._check_elements(conn, report)
            total_nodes = int(
                conn.execute(select(func.count()).select_from(recon_nodes)).scalar_one()
            )
            root = conn.execute(select(recon_nodes).where(recon_nodes.c.prefix == "")).first()
            if root is None:
                if report.elements:
                    report.problem("the tree has no root node")
            else:
                self._walk(conn, _node(root), report)
            if total_nodes != report.nodes:
                report.problem(
                    f"{total_nodes - report.nodes} node(s) are not reachable from the root"
                )
        return report

    def _check_elements(self, conn: Connection, report: CheckReport) -> None:
        stream = {"stream_results": True, "yield_per": 2000}
        tree = (
            bytes(r[0])
            for r in conn.execute(
                select(recon_elements.c.element)
                .order_by(recon_elements.c.element)
                .execution_options(**stream)
            )
        )
        stored = _unique(
            bytes.fromhex(r[0])
            for r in conn.execute(
                select(certs.c.digest).order_by(_digest_order(conn)).execution_options(**stream)
            )
        )
        a, b = next(tree, None), next(stored, None)
        while a is not None or b is not None:
            if b is None or (a is not None and a < b):
                report.elements += 1
                report.extra += 1
                if len(report.samples) < 10 and a is not None:
                    report.samples.append(f"extra {a.hex()}")
                a = next(tree, None)
            elif a is None or b < a:
                report.digests += 1
                report.missing += 1
                if len(report.samples) < 10:
                    report.samples.append(f"missing {b.hex()}")
                b = next(stored, None)
            else:
                report.elements += 1
                report.digests += 1
                a, b = next(tree, None), next(stored, None)

    def _walk(
        self, conn: Connection, node: Node, report: CheckReport
    ) -> tuple[int, tuple[int, ...]]:
        report.nodes += 1
        if node.leaf:
            els = [
                element(bytes(r[0]))
                for r in conn.execute(
                    select(recon_elements.c.element).where(_in_range(node.prefix))
                )
            ]
            size, svalues = len(els), sample_values(els)
            if size > SPLIT and len(node.prefix) < MAX_DEPTH:
                report.problem(f"leaf {node.prefix!r} holds {size} elements (more than {SPLIT})")
        else:
            kids = {
                r.prefix: _node(r)
                for r in conn.execute(
                    select(recon_nodes).where(recon_nodes.c.prefix.in_(children(node.prefix)))
                )
            }
            size, svalues = 0, EMPTY_SVALUES
            for prefix in children(node.prefix):
                if prefix not in kids:
                    report.problem(f"internal node {node.prefix!r} lacks its child {prefix!r}")
                    continue
                s, v = self._walk(conn, kids[prefix], report)
                size, svalues = size + s, multiply(svalues, v)
        if node.size != size:
            report.problem(f"node {node.prefix!r} counts {node.size} elements; it has {size}")
        elif node.svalues != svalues:
            report.problem(f"node {node.prefix!r} has wrong sample values")
        return size, svalues


def _unique(digests: Iterable[bytes]) -> Iterator[bytes]:
    """Sorted digests without repeats (two certificates could share a digest only by
    holding the same packets, but the set must not count one twice)."""
    last = None
    for d in digests:
        if d != last:
            yield d
            last = d


class _Builder:
    """Streaming construction: a node is a leaf when at most SPLIT elements fall in its
    range, which a lookahead of SPLIT + 1 sorted elements decides; nodes are written in
    batches as they are finished (children before their parent)."""

    def __init__(
        self, conn: Connection, digests: Iterator[bytes], progress: Progress | None
    ) -> None:
        self.conn = conn
        self.stream = digests
        self.ahead: list[bytes] = []  # looked at, not yet placed (at most SPLIT + 1)
        self.pending_nodes: list[dict[str, Any]] = []
        self.pending_elements: list[dict[str, bytes]] = []
        self.count = 0
        self.node_count = 0
        self.progress = progress

    def _fill(self, hi: bytes | None, n: int) -> int:
        """How many of the next elements (up to ``n``) lie below ``hi``."""
        while len(self.ahead) < n:
            d = next(self.stream, None)
            if d is None:
                break
            self.ahead.append(d)
        k = 0
        while k < min(n, len(self.ahead)) and (hi is None or self.ahead[k] < hi):
            k += 1
        return k

    def build(self, prefix: str) -> tuple[int, tuple[int, ...]]:
        _, hi = bounds(prefix)
        k = self._fill(hi, SPLIT + 1)
        if k <= SPLIT or len(prefix) >= MAX_DEPTH:
            if len(prefix) >= MAX_DEPTH:  # a full path: only one digest can be here
                k = self._fill(hi, len(self.ahead) + 1)
            mine, self.ahead = self.ahead[:k], self.ahead[k:]
            sv = sample_values(map(element, mine))
            self.pending_elements.extend({"element": d} for d in mine)
            self.count += len(mine)
            self._node(prefix, len(mine), sv, True)
            return len(mine), sv
        size, sv = 0, EMPTY_SVALUES
        for kid in children(prefix):
            s, v = self.build(kid)
            size, sv = size + s, multiply(sv, v)
        self._node(prefix, size, sv, False)
        return size, sv

    def _node(self, prefix: str, size: int, sv: tuple[int, ...], leaf: bool) -> None:
        self.pending_nodes.append(
            {"prefix": prefix, "size": size, "leaf": leaf, "svalues": pack_svalues(sv)}
        )
        self.node_count += 1
        if len(self.pending_nodes) >= 2000 or len(self.pending_elements) >= 5000:
            self.flush()

    def flush(self) -> None:
        if self.pending_elements:
            self.conn.execute(insert(recon_elements), self.pending_elements)
            if self.progress:
                self.progress(len(self.pending_elements))
        if self.pending_nodes:
            self.conn.execute(insert(recon_nodes), self.pending_nodes)
        self.pending_elements, self.pending_nodes = [], []
