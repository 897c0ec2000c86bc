"""The recon wire format (../shared/specs/sks-recon.md, "Wire format"), pure: messages
as values, ``encode`` to bytes, ``decode`` from one message body.

Every message is ``uint32 BE length`` + type byte + payload; the length counts the type
byte and payload. Integers are 4-byte big-endian; a string is its length and bytes; a
bit string is its number of bits, then a string of the bits MSB-first; an element array
is a count and that many 17-byte little-endian field elements.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from attester.recon.errors import ProtocolError
from attester.recon.field import DIGEST_BYTES, ELEMENT_BYTES, P
from attester.recon.ptree import BadPrefix, from_bitstring, to_bitstring


class MsgType(enum.IntEnum):
    RECON_RQST_POLY = 0
    RECON_RQST_FULL = 1
    ELEMENTS = 2
    FULL_ELEMENTS = 3
    SYNC_FAIL = 4
    DONE = 5
    FLUSH = 6
    ERROR = 7
    CONFIG = 10


@dataclass(frozen=True)
class ReconRqstPoly:
    prefix: str
    size: int
    samples: tuple[int, ...]


@dataclass(frozen=True)
class ReconRqstFull:
    prefix: str
    elements: frozenset[int]


@dataclass(frozen=True)
class Elements:
    elements: frozenset[int]


@dataclass(frozen=True)
class FullElements:
    elements: frozenset[int]


@dataclass(frozen=True)
class SyncFail:
    pass


@dataclass(frozen=True)
class Done:
    pass


@dataclass(frozen=True)
class Flush:
    pass


@dataclass(frozen=True)
class Error:
    text: str


# Config keys whose values are 4-byte integers (SKS ``int_to_string``).
_INT_KEYS = frozenset({"http port", "bitquantum", "mbar"})


@dataclass(frozen=True)
class Config:
    """The settings each side announces before reconciling. ``extra`` keeps keys
    neither SKS nor Hockeypuck require (Hockeypuck may send its own)."""

    version: str
    http_port: int
    bitquantum: int
    mbar: int
    filters: str
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def filter_set(self) -> frozenset[str]:
        return frozenset(f for f in self.filters.split(",") if f)


Message = (
    ReconRqstPoly
    | ReconRqstFull
    | Elements
    | FullElements
    | SyncFail
    | Done
    | Flush
    | Error
    | Config
)

_EMPTY = {SyncFail: MsgType.SYNC_FAIL, Done: MsgType.DONE, Flush: MsgType.FLUSH}


# ---- encoding


def _int(n: int) -> bytes:
    return struct.pack(">I", n)


def encode_string(s: str | bytes) -> bytes:
    data = s.encode() if isinstance(s, str) else s
    return _int(len(data)) + data


def _elements(zs: Iterable[int]) -> bytes:
    items = sorted(zs)
    return _int(len(items)) + b"".join(z.to_bytes(ELEMENT_BYTES, "little") for z in items)


def _bitstring(prefix: str) -> bytes:
    nbits, data = to_bitstring(prefix)
    return _int(nbits) + encode_string(data)


def _body(msg: Message) -> bytes:
    match msg:
        case ReconRqstPoly(prefix, size, samples):
            return (
                bytes([MsgType.RECON_RQST_POLY])
                + _bitstring(prefix)
                + _int(size)
                + _int(len(samples))
                + b"".join((s % P).to_bytes(ELEMENT_BYTES, "little") for s in samples)
            )
        case ReconRqstFull(prefix, elements):
            return bytes([MsgType.RECON_RQST_FULL]) + _bitstring(prefix) + _elements(elements)
        case Elements(elements):
            return bytes([MsgType.ELEMENTS]) + _elements(elements)
        case FullElements(elements):
            return bytes([MsgType.FULL_ELEMENTS]) + _elements(elements)
        case Error(text):
            return bytes([MsgType.ERROR]) + encode_string(text)
        case Config() as c:
            pairs: list[tuple[str, bytes]] = [
                ("version", c.version.encode()),
                ("http port", _int(c.http_port)),
                ("bitquantum", _int(c.bitquantum)),
                ("mbar", _int(c.mbar)),
                ("filters", c.filters.encode()),
                *((k, v.encode()) for k, v in c.extra.items()),
            ]
            return (
                bytes([MsgType.CONFIG])
                + _int(len(pairs))
                + b"".join(encode_string(k) + encode_string(v) for k, v in pairs)
            )
    return bytes([_EMPTY[type(msg)]])


def encode(msg: Message) -> bytes:
    """One framed message."""
    body = _body(msg)
    return _int(len(body)) + body


# ---- decoding


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ProtocolError("a message ends before its declared contents")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u32(self) -> int:
        v: int = struct.unpack(">I", self.take(4))[0]
        return v

    def string(self) -> bytes:
        return self.take(self.u32())

    def count(self, item_bytes: int) -> int:
        """An array length, checked against the bytes left (a peer cannot make us
        allocate for items it did not send)."""
        n = self.u32()
        if n * item_bytes > len(self.data) - self.pos:
            raise ProtocolError(f"an array claims {n} items but the message is shorter")
        return n

    def prefix(self) -> str:
        nbits = self.u32()
        try:
            return from_bitstring(nbits, self.string())
        except BadPrefix as e:
            raise ProtocolError(str(e)) from e

    def value(self) -> int:
        """A sample value: any field element."""
        z = int.from_bytes(self.take(ELEMENT_BYTES), "little")
        if z >= P:
            raise ProtocolError("a sample value is not an element of the field")
        return z

    def element(self) -> int:
        """A set element: a 16-byte digest, so its 17th byte is zero."""
        raw = self.take(ELEMENT_BYTES)
        if raw[DIGEST_BYTES]:
            raise ProtocolError("an element is not a key digest (its 17th byte is not zero)")
        return int.from_bytes(raw, "little")

    def elements(self) -> frozenset[int]:
        return frozenset(self.element() for _ in range(self.count(ELEMENT_BYTES)))


def decode(body: bytes) -> Message:
    """The message in ``body`` (type byte and payload, without the length); bytes
    after the payload are ignored, as SKS and Hockeypuck do. ``ProtocolError`` for
    anything else."""
    if not body:
        raise ProtocolError("an empty message")
    r = _Reader(body)
    kind = r.take(1)[0]
    match kind:
        case MsgType.RECON_RQST_POLY:
            prefix = r.prefix()
            size = r.u32()
            samples = tuple(r.value() for _ in range(r.count(ELEMENT_BYTES)))
            return ReconRqstPoly(prefix, size, samples)
        case MsgType.RECON_RQST_FULL:
            prefix = r.prefix()
            return ReconRqstFull(prefix, r.elements())
        case MsgType.ELEMENTS:
            return Elements(r.elements())
        case MsgType.FULL_ELEMENTS:
            return FullElements(r.elements())
        case MsgType.SYNC_FAIL:
            return SyncFail()
        case MsgType.DONE:
            return Done()
        case MsgType.FLUSH:
            return Flush()
        case MsgType.ERROR:
            return Error(r.string().decode("utf-8", "replace"))
        case MsgType.CONFIG:
            return _config(r)
    raise ProtocolError(f"unknown message type {kind}")


def _config(r: _Reader) -> Config:
    values: dict[str, str] = {}
    ints: dict[str, int] = {}
    for _ in range(r.count(8)):
        key = r.string().decode("utf-8", "replace")
        raw = r.string()
        if key in _INT_KEYS:
            if len(raw) != 4:
                raise ProtocolError(f"the config value {key!r} is not a 4-byte integer")
            ints[key] = struct.unpack(">I", raw)[0]
        else:
            values[key] = raw.decode("utf-8", "replace")
    missing = [k for k in ("version", "filters") if k not in values] + [
        k for k in sorted(_INT_KEYS) if k not in ints
    ]
    if missing:
        raise ProtocolError(f"the peer's config lacks {', '.join(missing)}")
    return Config(
        version=values.pop("version"),
        http_port=ints["http port"],
        bitquantum=ints["bitquantum"],
        mbar=ints["mbar"],
        filters=values.pop("filters"),
        extra=values,
    )
