"""Set reconciliation by rational-function interpolation (Minsky, Trachtenberg, Zippel,
2003), as SKS's ``decode.ml`` and Hockeypuck's ``decode.go`` do it; pure, no I/O.

A node's sample values are chi(k) = prod(k - z) over its elements at the sample points.
The quotient of the remote and local values at each point is A(k)/B(k), where the
roots of A are the elements only the remote side has and those of B the elements only
this side has. Steps of ``reconcile``:

1. From the first five points, solve for monic A of degree ma and monic B of degree mb
   (ma - mb = the size difference d, ma + mb at most mbar = 5), and cancel their gcd.
2. Check the result at the sixth point; a mismatch means more than mbar differences.
3. Check that A and B divide z^p - z, i.e. split into distinct linear factors, as a set
   difference must; otherwise the interpolation produced a fake.
4. Find their roots.

Any failure returns ``None``: the caller then falls back to exchanging elements or to
the node's children. The 5x5 linear system is solved with Python integers; the
polynomial steps (gcd, z^p mod f, roots) use FLINT's ``fmpz_mod_poly``, about five times
faster here than a focused pure-Python version (``bench/recon_decode.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

from flint import fmpz_mod_poly, fmpz_mod_poly_ctx

from attester.recon.field import DIGEST_BYTES, POINTS, P, inverse

_CTX = fmpz_mod_poly_ctx(P)
_Z = _CTX([0, 1])
_MAX_ELEMENT = 1 << (8 * DIGEST_BYTES)


def reconcile(values: Sequence[int], d: int) -> tuple[set[int], set[int]] | None:
    """The (remote-only, local-only) elements behind ``values`` (remote sample values
    divided by local ones, at the six points) and ``d`` (remote size - local size), or
    ``None`` when they cannot be recovered."""
    if len(values) != len(POINTS):
        return None
    solved = interpolate(values[:-1], POINTS[:-1], d)
    if solved is None:
        return None
    a, b = solved
    k = POINTS[-1]
    bk = int(b(k))
    if bk == 0 or int(a(k)) * inverse(bk) % P != values[-1] % P:
        return None
    if not (splits(a) and splits(b)):
        return None
    remote, local = roots(a), roots(b)
    if any(z >= _MAX_ELEMENT for z in remote | local):
        return None  # a root no digest can be: not a real difference
    return remote, local


def interpolate(
    values: Sequence[int], points: Sequence[int], d: int
) -> tuple[fmpz_mod_poly, fmpz_mod_poly] | None:
    """Monic A, B with A(k) = f·B(k) at each (point k, value f), deg A - deg B = d,
    reduced by their gcd; ``None`` when the system has no solution."""
    m = len(values)
    if abs(d) > m:
        return None
    if (m + d) % 2:
        m -= 1
    ma, mb = (m + d) // 2, (m - d) // 2
    # Row j: A's low coefficients, B's low coefficients times -f, then the right side
    # f·k^mb - k^ma (the monic leading terms moved over).
    rows: list[list[int]] = []
    for j in range(m):
        k, f = points[j], values[j] % P
        powers = [pow(k, i, P) for i in range(max(ma, mb) + 1)]
        rows.append(
            [powers[i] for i in range(ma)]
            + [-f * powers[i] % P for i in range(mb)]
            + [(f * powers[mb] - powers[ma]) % P]
        )
    x = _solve(rows, m)
    if x is None:
        return None
    a = _CTX([*x[:ma], 1])
    b = _CTX([*x[ma:], 1])
    g = a.gcd(b)
    if g.degree() > 0:
        a, b = a.exact_division(g), b.exact_division(g)
    return a, b


def _solve(rows: list[list[int]], n: int) -> list[int] | None:
    """Gauss-Jordan elimination of an n-unknown system (rows end with the right side).
    Columns without a pivot are free and set to 0; an inconsistent system gives None."""
    pivots: list[tuple[int, int]] = []
    r = 0
    for c in range(n):
        p = next((i for i in range(r, len(rows)) if rows[i][c] % P), None)
        if p is None:
            continue
        rows[r], rows[p] = rows[p], rows[r]
        inv = inverse(rows[r][c])
        rows[r] = [v * inv % P for v in rows[r]]
        for i in range(len(rows)):
            if i != r and rows[i][c]:
                f = rows[i][c]
                rows[i] = [(v - f * w) % P for v, w in zip(rows[i], rows[r], strict=True)]
        pivots.append((r, c))
        r += 1
    if any(row[n] % P for row in rows[r:]):
        return None
    x = [0] * n
    for row, c in pivots:
        x[c] = rows[row][n]
    return x


def splits(f: fmpz_mod_poly) -> bool:
    """Whether the monic ``f`` is a product of distinct linear factors (f | z^p - z)."""
    if f.degree() <= 1:
        return f.degree() >= 0
    return bool(_Z.pow_mod(P, f) == _Z % f)


def roots(f: fmpz_mod_poly) -> set[int]:
    """The roots of a monic ``f`` known to split into distinct linear factors."""
    if f.degree() <= 0:
        return set()
    return {int(r) for r, _ in f.roots()}
