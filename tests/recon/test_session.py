"""Both roles of a session against each other over real loopback TCP, on trees held in
memory (the interop with the real SKS is in test_sks.py), and the wire codec."""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Awaitable, Callable

import pytest

from attester.recon.errors import ConfigRefused, LimitExceeded, PeerTimeout, ProtocolError
from attester.recon.field import element
from attester.recon.session import Channel, Limits, Result, answer, drive, exchange_config
from attester.recon.wire import (
    Config,
    Done,
    Elements,
    Error,
    Flush,
    FullElements,
    ReconRqstFull,
    ReconRqstPoly,
    SyncFail,
    decode,
    encode,
)
from tests.support.recon_tree import MemoryTree

SKS = Config("1.1.6", 11371, 2, 5, "yminsky.dedup,yminsky.merge")


def test_messages_round_trip() -> None:
    for msg in [
        ReconRqstPoly("0312", 300, (1, 2, 3, 4, 5, 530512889551602322505127520352579437338)),
        ReconRqstFull("", frozenset({1, 2, 2**128 - 1})),
        Elements(frozenset()),
        FullElements(frozenset({7})),
        SyncFail(),
        Done(),
        Flush(),
        Error("no such node"),
        Config("1.1.6", 11371, 2, 5, "a,b", {"custom": "x"}),
    ]:
        data = encode(msg)
        assert struct.unpack(">I", data[:4])[0] == len(data) - 4
        assert decode(data[4:]) == msg


def test_root_poly_request_is_what_sks_sends() -> None:
    # Captured from the real sks 1.1.6: the root (0 bits, 0 bytes), 300 elements, 6 values.
    body = encode(ReconRqstPoly("", 300, (1,) * 6))[4:]
    assert body[:13].hex() == "00" + "00000000" + "00000000" + "0000012c"
    assert body[13:17] == struct.pack(">I", 6) and len(body) == 17 + 6 * 17


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "empty"),
        (b"\x63", "unknown message type 99"),
        (b"\x02" + struct.pack(">I", 1000) + b"\x00" * 17, "claims 1000 items"),
        (b"\x02" + struct.pack(">I", 1) + b"\x00" * 16 + b"\x01", "not a key digest"),
        (b"\x01" + struct.pack(">II", 3, 1) + b"\x00", "3 bits is not a node"),
        (
            b"\x0a"
            + struct.pack(">I", 1)
            + struct.pack(">I", 4)
            + b"mbar"
            + struct.pack(">I", 2)
            + b"xx",
            "4-byte",
        ),
        (b"\x0a" + struct.pack(">I", 0), "lacks version"),
    ],
)
def test_garbage_is_a_protocol_error(body: bytes, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem):
        decode(body)


Role = Callable[[Channel], Awaitable[Result]]


async def _pair_outcomes(
    accepting: Role, connecting: Role
) -> tuple[Result | BaseException, Result | BaseException]:
    """Run one session over loopback TCP (``accepting`` on the accepted socket); each
    side's result, or what it raised."""
    done: asyncio.Future[Result | BaseException] = asyncio.get_running_loop().create_future()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            done.set_result(await accepting(Channel(reader, writer, LIMITS)))
        except Exception as e:
            done.set_result(e)
        finally:
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    mine: Result | BaseException
    try:
        mine = await connecting(Channel(reader, writer, LIMITS))
    except Exception as e:
        mine = e
    finally:
        writer.close()
        await writer.wait_closed()
    theirs = await done
    server.close()
    await server.wait_closed()
    return theirs, mine


async def _pair(accepting: Role, connecting: Role) -> tuple[Result, Result]:
    theirs, mine = await _pair_outcomes(accepting, connecting)
    assert isinstance(theirs, Result) and isinstance(mine, Result), (theirs, mine)
    return theirs, mine


LIMITS = Limits(timeout=5, session_seconds=30, max_missing=100000)


def _sides(
    rng: random.Random, common: int, only_a: int, only_b: int, prefix: bytes = b""
) -> tuple[set[bytes], set[bytes], set[bytes]]:
    def d() -> bytes:
        return prefix + rng.randbytes(16 - len(prefix))

    both = {d() for _ in range(common)}
    return both, {rng.randbytes(16) for _ in range(only_a)}, {d() for _ in range(only_b)}


def _reconcile(a: set[bytes], b: set[bytes]) -> tuple[Result, Result]:
    """A accepts (drives), B connects (answers)."""
    ta, tb = MemoryTree(a), MemoryTree(b)
    return asyncio.run(_pair(lambda c: drive(c, ta), lambda c: answer(c, tb)))


@pytest.mark.parametrize(
    ("common", "only_a", "only_b"),
    [
        (300, 2, 3),  # a handful: decoded at the root
        (300, 0, 0),
        (600, 30, 12),  # more than mbar: SyncFail, children
        (40, 5, 0),  # a small tree: whole element lists
        (500, 1000, 0),  # one side has 1,000 the other lacks
        (500, 0, 1000),
    ],
)
def test_both_sides_learn_exactly_what_they_lack(common: int, only_a: int, only_b: int) -> None:
    both, a_only, b_only = _sides(random.Random(common + only_a), common, only_a, only_b)
    ra, rb = _reconcile(both | a_only, both | b_only)
    assert ra.error is None and rb.error is None
    assert ra.missing == {element(d) for d in b_only}
    assert rb.missing == {element(d) for d in a_only}
    # What a side says the other lacks is never more than that (FullElements replies
    # leave the counting to the driver).
    assert ra.told <= len(a_only) and rb.told <= len(b_only)


def test_a_whole_subtree_missing() -> None:
    rng = random.Random(5)
    both = {rng.randbytes(16) for _ in range(800)}
    subtree = {d for d in both if d[0] >> 6 == 0}  # every element under prefix "0"
    ra, rb = _reconcile(both, both - subtree)
    assert ra.error is None and rb.error is None
    assert ra.missing == set() and rb.missing == {element(d) for d in subtree}


def test_config_refusals_carry_the_reason() -> None:
    other = Config("1.1.6", 11371, 2, 5, "yminsky.merge")

    async def side(c: Channel, ours: Config) -> Result:
        await exchange_config(c, ours)
        return Result("never")

    a, b = asyncio.run(_pair_outcomes(lambda c: side(c, SKS), lambda c: side(c, other)))
    assert isinstance(a, ConfigRefused) and isinstance(b, ConfigRefused)
    # Both refuse, each in SKS's words, and each hears the other's sentence.
    assert a.by_peer and a.ours == (
        "filters do not match.\n\tlocal filters: [ yminsky.dedup yminsky.merge ]\n"
        "\tremote filters: [ yminsky.merge ]"
    )
    assert b.by_peer and b.reason == a.ours and a.reason == b.ours


def test_oversized_and_endless_peers_are_cut_off() -> None:
    tree = MemoryTree({random.Random(1).randbytes(16) for _ in range(10)})

    async def run(junk: bytes, limits: Limits) -> Result:
        stop = asyncio.Event()

        async def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                w.write(junk)
                await w.drain()
                await stop.wait()  # then stay silent until the test is done
            finally:
                w.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        result = await answer(Channel(reader, writer, limits), tree)
        writer.close()
        await writer.wait_closed()
        stop.set()
        await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()
        return result

    limits = Limits(timeout=0.5, session_seconds=5, max_message_bytes=1024, max_missing=50)
    big = struct.pack(">I", 10_000_000) + b"\x02"
    assert isinstance(asyncio.run(run(big, limits)).error, LimitExceeded)
    quiet = asyncio.run(run(b"", limits))
    assert isinstance(quiet.error, PeerTimeout)
    # An endless stream of elements we supposedly lack: cut at max_missing.
    flood = b"".join(encode(Elements(frozenset({i}))) for i in range(1000))
    endless = asyncio.run(run(flood, limits))
    assert endless.truncated and len(endless.missing) == 50
    garbage = asyncio.run(run(b"\x00\x00\x00\x05garbage", limits))
    assert isinstance(garbage.error, ProtocolError)
