"""Decoding a recon node: FLINT (what ``attester.recon.decode`` uses) against a focused
pure-Python implementation of the same steps, on the same random differences.

    .venv/bin/python bench/recon_decode.py [trials]

Both run ``interpolate`` (the same 5x5 solve) and then the polynomial steps: the gcd,
the check that A and B divide z^p - z, and the roots (Cantor-Zassenhaus). Prints the
time per decode for each number of differences and the ratio; docs/federation.md keeps
the numbers. The pure-Python version lives here, not in the package: it lost.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Sequence

from attester.recon import decode as flint_decode
from attester.recon.field import DIGEST_BYTES, POINTS, P, inverse, sample_values

Poly = list[int]


# ---- the focused pure-Python polynomial code (coefficients lowest first)


def _trim(a: Poly) -> Poly:
    while a and a[-1] == 0:
        a.pop()
    return a


def _eval(a: Poly, x: int) -> int:
    acc = 0
    for c in reversed(a):
        acc = (acc * x + c) % P
    return acc


def _monic(a: Poly) -> Poly:
    if not a or a[-1] == 1:
        return a
    inv = inverse(a[-1])
    return [c * inv % P for c in a]


def _sub(a: Poly, b: Poly) -> Poly:
    n = max(len(a), len(b))
    return _trim(
        [((a[i] if i < len(a) else 0) - (b[i] if i < len(b) else 0)) % P for i in range(n)]
    )


def _mul(a: Poly, b: Poly) -> Poly:
    if not a or not b:
        return []
    out = [0] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        if x:
            for j, y in enumerate(b):
                out[i + j] += x * y
    return _trim([c % P for c in out])


def _divmod(a: Poly, m: Poly) -> tuple[Poly, Poly]:
    r = list(a)
    dm = len(m) - 1
    if len(r) <= dm:
        return [], _trim(r)
    lead = inverse(m[-1])
    q = [0] * (len(r) - dm)
    for i in range(len(r) - 1, dm - 1, -1):
        c = r[i] % P
        if c:
            c = c * lead % P
            q[i - dm] = c
            for j in range(dm + 1):
                r[i - dm + j] -= c * m[j]
    return _trim(q), _trim([c % P for c in r[:dm]])


def _gcd(a: Poly, b: Poly) -> Poly:
    a, b = _trim(list(a)), _trim(list(b))
    while b:
        a, b = b, _divmod(a, b)[1]
    return _monic(a)


def _powmod(base: Poly, e: int, m: Poly) -> Poly:
    result: Poly = _divmod([1], m)[1]
    b = _divmod(base, m)[1]
    while e:
        if e & 1:
            result = _divmod(_mul(result, b), m)[1]
        e >>= 1
        if e:
            b = _divmod(_mul(b, b), m)[1]
    return result


def _splits(f: Poly) -> bool:
    if len(f) <= 2:
        return bool(f)
    return not _sub(_powmod([0, 1], P, f), [0, 1])


_rng = random.Random(0)


def _roots(f: Poly) -> set[int]:
    n = len(f) - 1
    if n <= 0:
        return set()
    if n == 1:
        return {-f[0] * inverse(f[1]) % P}
    while True:
        g = _gcd(_sub(_powmod([_rng.randrange(P), 1], (P - 1) // 2, f), [1]), f)
        if 0 < len(g) - 1 < n:
            return _roots(g) | _roots(_divmod(f, g)[0])


def pure_reconcile(values: Sequence[int], d: int) -> tuple[set[int], set[int]] | None:
    solved = flint_decode.interpolate(values[:-1], POINTS[:-1], d)
    if solved is None:
        return None
    a = [int(c) for c in solved[0].coeffs()]
    b = [int(c) for c in solved[1].coeffs()]
    g = _gcd(a, b)
    if len(g) > 1:
        a, b = _divmod(a, g)[0], _divmod(b, g)[0]
    bk = _eval(b, POINTS[-1])
    if bk == 0 or _eval(a, POINTS[-1]) * inverse(bk) % P != values[-1]:
        return None
    if not (_splits(a) and _splits(b)):
        return None
    return _roots(a), _roots(b)


# ---- the measurement


def case(rng: random.Random, remote: int, local: int) -> tuple[list[int], int, set[int], set[int]]:
    common = [rng.getrandbits(8 * DIGEST_BYTES) for _ in range(200)]
    r = {rng.getrandbits(8 * DIGEST_BYTES) for _ in range(remote)}
    loc = {rng.getrandbits(8 * DIGEST_BYTES) for _ in range(local)}
    rs, ls = sample_values(common + list(r)), sample_values(common + list(loc))
    return [x * inverse(y) % P for x, y in zip(rs, ls, strict=True)], remote - local, r, loc


Decoder = Callable[[Sequence[int], int], tuple[set[int], set[int]] | None]


def timed(decoder: Decoder, cases: list[tuple[list[int], int, set[int], set[int]]]) -> float:
    start = time.perf_counter()
    for values, d, r, loc in cases:
        assert decoder(values, d) == (r, loc)
    return (time.perf_counter() - start) / len(cases)


def main() -> None:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    rng = random.Random(1)
    print(f"{'differences':>12} {'FLINT ms':>10} {'pure ms':>10} {'pure/FLINT':>11}")
    total_f = total_p = 0.0
    for k in range(1, 6):
        cases = [case(rng, r, k - r) for r in (rng.randint(0, k) for _ in range(trials))]
        f, p = timed(flint_decode.reconcile, cases), timed(pure_reconcile, cases)
        total_f, total_p = total_f + f, total_p + p
        print(f"{k:>12} {f * 1000:>10.3f} {p * 1000:>10.3f} {p / f:>10.1f}x")
    print(
        f"{'1..5 mean':>12} {total_f / 5 * 1000:>10.3f} {total_p / 5 * 1000:>10.3f} "
        f"{total_p / total_f:>10.1f}x"
    )


if __name__ == "__main__":
    main()
