"""One reconciliation session over an open connection, in either role (asyncio).

The side that accepted the connection *drives*: it walks its tree from the root and
asks about each node, the whole element list of small nodes (``ReconRqstFull``) and the
sample values of large ones (``ReconRqstPoly``), at most 100 requests before a ``Flush``
(answers come only after one). The side that connected *answers*: it decodes the
difference from the sample values, or sends its elements (``FullElements``) or
``SyncFail`` (ask my children) when there are too many differences. Both sides end up
knowing the elements only the other holds, and each fetches those keys from the other
afterwards (``recovery``). ../shared/specs/sks-recon.md, "Roles".

Every read has a timeout, the session a deadline, every message a size limit, and the
elements learnt a cap; a peer that breaks one ends the session (``Result.error``), and
what was learnt before still counts. Tree reads and decoding run in a worker thread,
one call per batch of requests.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter, deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from anyio import to_thread

from attester.recon.decode import reconcile
from attester.recon.errors import (
    ConfigRefused,
    LimitExceeded,
    PeerError,
    PeerTimeout,
    PeerUnreachable,
    ProtocolError,
)
from attester.recon.field import inverse
from attester.recon.ptree import BITQUANTUM, FULL_BELOW, MBAR, Node, TreeView, children
from attester.recon.wire import (
    Config,
    Done,
    Elements,
    Error,
    Flush,
    FullElements,
    Message,
    ReconRqstFull,
    ReconRqstPoly,
    SyncFail,
    decode,
    encode,
    encode_string,
)

OUTSTANDING = 100  # requests in flight before a Flush (SKS max_outstanding_recon_requests)
# An answering side buffers requests until the driver's Flush; a driver that never
# flushes is cut off here instead of growing that buffer without end.
MAX_UNFLUSHED = 10 * OUTSTANDING
_MAX_STATUS_BYTES = 64 * 1024
_MIN_VERSION = (0, 1, 5)  # SKS's compatible_version


@dataclass(frozen=True)
class Limits:
    timeout: float = 45.0  # seconds for each read
    session_seconds: float = 600.0
    max_message_bytes: int = 1024 * 1024
    max_missing: int = 20000  # elements this side may learn it lacks


@dataclass
class Result:
    """What one session exchanged."""

    role: str  # "driver" (we accepted the connection) or "answerer" (we connected)
    remote: Config | None = None
    missing: set[int] = field(default_factory=set)  # elements only the peer has
    told: int = 0  # elements we told the peer it lacks (it fetches them from us)
    told_sample: list[int] = field(default_factory=list)
    requests: int = 0  # requests sent (driver) or answered (answerer)
    truncated: bool = False  # stopped at ``max_missing``
    error: PeerError | None = None  # the session ended early because of this
    seconds: float = 0.0
    messages: Counter[tuple[str, str]] = field(default_factory=Counter)

    def learn(self, elements: Iterable[int], cap: int) -> None:
        for z in elements:
            if len(self.missing) >= cap:
                self.truncated = True
                return
            self.missing.add(z)

    def tell(self, elements: Collection[int]) -> None:
        self.told += len(elements)
        for z in elements:
            if len(self.told_sample) >= 10:
                break
            self.told_sample.append(z)


class Channel:
    """A recon connection: framed messages in and out, every read bounded in size and
    time (``Limits``), the whole session by a deadline."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limits: Limits
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.limits = limits
        self.deadline = time.monotonic() + limits.session_seconds
        self.bytes_in = 0
        self.bytes_out = 0
        # Messages by (direction, type name), e.g. ("in", "SyncFail"): which paths of the
        # protocol a session took (metrics, ``attester recon sync``).
        self.messages: Counter[tuple[str, str]] = Counter()

    def _timeout(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise LimitExceeded(
                "session_seconds",
                f"the session took longer than {self.limits.session_seconds:g} s",
            )
        return min(self.limits.timeout, left)

    async def _exactly(self, n: int) -> bytes:
        timeout = self._timeout()
        try:
            async with asyncio.timeout(timeout):
                data = await self.reader.readexactly(n)
        except asyncio.IncompleteReadError as e:
            raise PeerUnreachable("the peer closed the connection") from e
        except TimeoutError as e:
            self._timeout()  # the session deadline, if that is what passed
            raise PeerTimeout(f"the peer sent nothing for {timeout:g} s") from e
        except OSError as e:
            raise PeerUnreachable(f"the connection failed: {e}") from e
        self.bytes_in += n
        return data

    async def read(self) -> Message:
        n = int.from_bytes(await self._exactly(4), "big")
        if n > self.limits.max_message_bytes:
            raise LimitExceeded(
                "message_bytes",
                f"the peer sent a message of {n} bytes "
                f"(at most {self.limits.max_message_bytes} are accepted)",
            )
        msg = decode(await self._exactly(n))
        self.messages["in", type(msg).__name__] += 1
        return msg

    async def read_string(self) -> str:
        n = int.from_bytes(await self._exactly(4), "big")
        if n > _MAX_STATUS_BYTES:
            raise LimitExceeded("message_bytes", f"the peer sent a status of {n} bytes")
        return (await self._exactly(n)).decode("utf-8", "replace")

    def write(self, msg: Message) -> None:
        self.messages["out", type(msg).__name__] += 1
        self.send(encode(msg))

    def send(self, data: bytes) -> None:
        self.bytes_out += len(data)
        self.writer.write(data)

    async def drain(self) -> None:
        timeout = self._timeout()
        try:
            async with asyncio.timeout(timeout):
                await self.writer.drain()
        except TimeoutError as e:
            raise PeerTimeout(f"the peer took nothing we sent for {timeout:g} s") from e
        except OSError as e:
            raise PeerUnreachable(f"the connection failed: {e}") from e


# ---- configuration


def _version(text: str) -> tuple[int, ...]:
    parts = text.split(".", 2)
    if len(parts) != 3:
        raise ValueError(text)
    out = []
    for p in parts:
        m = re.match(r"\d+", p)
        if m is None:
            raise ValueError(text)
        out.append(int(m.group()))
    return tuple(out)


def _listed(filters: frozenset[str]) -> str:
    return "[ " + "".join(f + " " for f in sorted(filters)) + "]"


def check_config(ours: Config, theirs: Config) -> str | None:
    """Why the peer's configuration cannot reconcile with ours (SKS's rules and
    sentences: a version at least 0.1.5, the same set of filters, bitquantum and
    mbar), or None."""
    try:
        version = _version(theirs.version)
    except ValueError:
        return f"Error parsing configdata: version {theirs.version!r}"
    if version < _MIN_VERSION:
        return f"Requires version at least 0.1.5.  {theirs.version} provided "
    if ours.filter_set != theirs.filter_set:
        return (
            "filters do not match.\n"
            f"\tlocal filters: {_listed(ours.filter_set)}\n"
            f"\tremote filters: {_listed(theirs.filter_set)}"
        )
    if theirs.bitquantum != BITQUANTUM:
        return "bitquantum values do not match"
    if theirs.mbar != MBAR:
        return "mbar values do not match"
    return None


async def exchange_config(channel: Channel, ours: Config) -> Config:
    """Send our Config, read theirs, and each side's verdict ("passed", or "failed"
    and a reason). ``ConfigRefused`` when either side refuses."""
    channel.write(ours)
    await channel.drain()
    try:
        theirs = await channel.read()
        problem = None if isinstance(theirs, Config) else "No configdata provided"
    except ProtocolError as e:
        theirs, problem = None, f"Error parsing configdata: {e}"
    if problem is None:
        assert isinstance(theirs, Config)
        problem = check_config(ours, theirs)
    if problem is not None:
        channel.send(encode_string("failed") + encode_string(problem))
        await channel.drain()
        # The peer sends its verdict too; when it refused as well, its sentence is the
        # one an operator of the peer recognises (SKS: "filters do not match...").
        try:
            if await channel.read_string() == "failed":
                raise ConfigRefused(await channel.read_string(), by_peer=True, ours=problem)
        except PeerError:
            pass
        raise ConfigRefused(problem, by_peer=False)
    channel.send(encode_string("passed"))
    await channel.drain()
    status = await channel.read_string()
    if status == "failed":
        raise ConfigRefused(await channel.read_string(), by_peer=True)
    if status != "passed":
        raise ProtocolError(f"the peer answered our configuration with {status[:40]!r}")
    assert isinstance(theirs, Config)
    return theirs


# ---- driving (we accepted the connection)


async def drive(channel: Channel, tree: TreeView) -> Result:
    """Walk our tree against the peer's, breadth first, up to ``OUTSTANDING`` requests
    per round trip; then ``Done``."""
    result = Result("driver")
    started = time.monotonic()
    cap = channel.limits.max_missing
    try:
        root = (await to_thread.run_sync(tree.nodes, [""]))[""]
        queue: deque[Node] = deque([root])
        while queue and not result.truncated:
            batch = [queue.popleft() for _ in range(min(OUTSTANDING, len(queue)))]
            whole = [n.prefix for n in batch if n.leaf or n.size < FULL_BELOW]
            local = await to_thread.run_sync(tree.elements, whole) if whole else {}
            for n in batch:
                if n.prefix in local:
                    channel.write(ReconRqstFull(n.prefix, frozenset(local[n.prefix])))
                else:
                    channel.write(ReconRqstPoly(n.prefix, n.size, n.svalues))
            channel.write(Flush())
            await channel.drain()
            result.requests += len(batch)
            split: list[str] = []
            full: list[tuple[str, frozenset[int]]] = []
            for n in batch:
                match await channel.read():
                    case SyncFail():
                        if n.prefix in local:
                            raise ProtocolError("SyncFail in reply to a request for elements")
                        split.append(n.prefix)
                    case Elements(elements):
                        result.learn(elements, cap)
                    case FullElements(elements):
                        full.append((n.prefix, elements))
                    case Error(text):
                        raise ProtocolError(f"the peer reported an error: {text[:200]}")
                    case other:
                        raise ProtocolError(f"{type(other).__name__} in reply to a request")
            if full:
                need = [p for p, _ in full if p not in local]
                if need:
                    local.update(await to_thread.run_sync(tree.elements, need))
                for prefix, theirs in full:
                    mine = local[prefix]
                    lacking = mine - theirs
                    channel.write(Elements(frozenset(lacking)))
                    result.tell(lacking)
                    result.learn(theirs - mine, cap)
            if split:
                kids = await to_thread.run_sync(tree.nodes, [c for p in split for c in children(p)])
                queue.extend(kids[c] for p in split for c in children(p) if c in kids)
        channel.write(Done())
        await channel.drain()
    except PeerError as e:
        result.error = e
    result.seconds = time.monotonic() - started
    result.messages = channel.messages
    return result


# ---- answering (we connected)


@dataclass
class _Answers:
    replies: list[Message] = field(default_factory=list)
    learnt: set[int] = field(default_factory=set)
    told: set[int] = field(default_factory=set)


def _answer(tree: TreeView, requests: list[ReconRqstPoly | ReconRqstFull]) -> _Answers:
    """Replies to one flushed batch of requests, in order (runs in a worker thread)."""
    out = _Answers()
    nodes = tree.nodes({r.prefix for r in requests if isinstance(r, ReconRqstPoly)})
    decided: list[Message | str] = []  # a reply, or the prefix whose elements it needs
    for r in requests:
        if isinstance(r, ReconRqstFull):
            decided.append(r.prefix)
            continue
        node = nodes.get(r.prefix)
        if node is None:
            # The prefix lies below one of our leaves: all we hold there is its elements.
            decided.append(r.prefix)
            continue
        solved = None
        if len(r.samples) == len(node.svalues) and all(node.svalues):
            values = [s * inverse(v) for s, v in zip(r.samples, node.svalues, strict=True)]
            solved = reconcile(values, r.size - node.size)
        if solved is not None:
            remote_only, local_only = solved
            out.learnt |= remote_only
            out.told |= local_only
            decided.append(Elements(frozenset(local_only)))
        elif node.leaf or node.size < FULL_BELOW:
            decided.append(r.prefix)
        else:
            decided.append(SyncFail())
    need = {d for d in decided if isinstance(d, str)}
    elements = tree.elements(need) if need else {}
    for r, d in zip(requests, decided, strict=True):
        if not isinstance(d, str):
            out.replies.append(d)
        elif isinstance(r, ReconRqstFull):
            mine = elements[d]
            out.learnt |= r.elements - mine
            out.told |= mine - r.elements
            out.replies.append(Elements(frozenset(mine - r.elements)))
        else:
            out.replies.append(FullElements(frozenset(elements[d])))
    return out


async def answer(channel: Channel, tree: TreeView) -> Result:
    """Answer the peer's requests until it says ``Done``."""
    result = Result("answerer")
    started = time.monotonic()
    cap = channel.limits.max_missing
    pending: list[ReconRqstPoly | ReconRqstFull] = []
    try:
        while not result.truncated:
            match await channel.read():
                case ReconRqstPoly() | ReconRqstFull() as request:
                    pending.append(request)
                    if len(pending) > MAX_UNFLUSHED:
                        raise LimitExceeded(
                            "outstanding",
                            f"the peer sent more than {MAX_UNFLUSHED} requests without a Flush",
                        )
                case Elements(elements):
                    result.learn(elements, cap)
                case Flush():
                    if pending:
                        answers = await to_thread.run_sync(_answer, tree, pending)
                        result.requests += len(pending)
                        pending = []
                        for reply in answers.replies:
                            channel.write(reply)
                        result.learn(answers.learnt, cap)
                        result.tell(answers.told)
                    await channel.drain()
                case Done():
                    break
                case Error(text):
                    raise ProtocolError(f"the peer reported an error: {text[:200]}")
                case other:
                    raise ProtocolError(f"unexpected {type(other).__name__} from the driving side")
    except PeerError as e:
        result.error = e
    result.seconds = time.monotonic() - started
    result.messages = channel.messages
    return result
