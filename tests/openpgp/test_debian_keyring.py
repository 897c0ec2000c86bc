"""Real data: every certificate of Debian's keyring, checked against GnuPG.

Known, principled differences (docs/openpgp.md, "Differences from GnuPG"):

- GnuPG lists a user ID that carries only a self-revocation (Debian's keyring strips old
  bindings and keeps the revocation) as revoked; for us a user ID without a binding is not
  bound at all, so it is not listed. Checked below: every user ID only GnuPG lists is
  revoked there, and has a self-revocation but no valid binding here.
- GnuPG accepts a signature with a non-minimally encoded MPI; Sequoia drops such a packet
  while parsing. One Ed25519 signing subkey's binding embeds such a back-signature, so the
  subkey is not bound here. Checked below: a subkey only GnuPG lists has no self-signature
  left in our stored data.
- RSA keys over 4096 bits (9 of them) go through ``_large_rsa``; they must agree with
  GnuPG like all the others.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest
from pysequoia import Cert

from attester.openpgp import Limits, ParsedCert, parse_certificate, parse_keyring, publishable
from attester.openpgp._keys import fingerprint_of
from attester.openpgp._packets import split_packets
from attester.openpgp._signature import CERTIFICATION_REVOCATION, USER_ID_CERTIFICATIONS
from attester.openpgp._walk import walk
from tests.openpgp.conftest import GPG, unescape

KEYRING = Path("/usr/share/keyrings/debian-keyring.gpg")


class GpgKey:
    def __init__(self, pub: list[bytes]) -> None:
        self.pub = pub
        self.fingerprint = ""
        self.uids: dict[bytes, bytes] = {}  # raw user ID -> validity field
        self.subkeys: dict[str, list[bytes]] = {}  # fingerprint -> sub record


def _gpg_keys(home: Path) -> dict[str, GpgKey]:
    assert GPG is not None
    out = subprocess.run(
        [GPG, "--homedir", str(home), "--batch", "--with-colons", "--show-keys", str(KEYRING)],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    keys: dict[str, GpgKey] = {}
    key: GpgKey | None = None
    pending_sub: list[bytes] | None = None
    last = b""
    for line in out.splitlines():
        f = line.split(b":")
        if f[0] == b"pub":
            key = GpgKey(f)
        elif f[0] == b"rvk":
            continue  # a designated revoker between a key and its fingerprint
        elif f[0] == b"fpr" and key is not None:
            if last == b"pub":
                key.fingerprint = f[9].decode()
                keys[key.fingerprint] = key
            elif last == b"sub" and pending_sub is not None:
                key.subkeys[f[9].decode()] = pending_sub
        elif f[0] == b"sub":
            pending_sub = f
        elif f[0] == b"uid" and key is not None:
            key.uids[unescape(f[9])] = f[1]
        last = f[0]
    return keys


def _timestamp(dt: datetime | None) -> bytes:
    return str(int(dt.timestamp())).encode() if dt else b""


@pytest.mark.slow
@pytest.mark.skipif(
    not KEYRING.exists(), reason=f"{KEYRING} is absent (Debian package debian-keyring)"
)
@pytest.mark.skipif(GPG is None, reason="gpg is not installed")
def test_debian_keyring_matches_gnupg(gnupghome: Path) -> None:
    """Every certificate as GnuPG sees it; and what it serves depends only on its stored
    bytes. (One test: parsing the keyring is its slow part, and each check needs it.)"""
    # How fast this is, is bench/'s business (timed assertions flake on loaded machines).
    data = KEYRING.read_bytes()
    limits = Limits(max_input_bytes=len(data))
    results = parse_keyring(data, limits)

    rejected = [r for r in results if not isinstance(r, ParsedCert)]
    assert rejected == []
    ours = {c.fingerprint.hex: c for c in results if isinstance(c, ParsedCert)}
    theirs = _gpg_keys(gnupghome)
    assert len(ours) == len(theirs) == 905
    assert ours.keys() == theirs.keys()

    differences: dict[str, int] = defaultdict(int)
    for fpr, g in theirs.items():
        c = ours[fpr]
        # Revocation and expiry of the certificate.
        assert (g.pub[1] == b"r") == c.revoked, fpr
        assert g.pub[6] == _timestamp(c.expires), fpr

        # Subkeys: the same, with the same revocation state.
        mine = {k.fingerprint.hex: k for k in c.subkeys}
        for sub in mine.keys() & g.subkeys.keys():
            assert (g.subkeys[sub][1] == b"r") == mine[sub].revoked, (fpr, sub)
        assert not mine.keys() - g.subkeys.keys(), fpr
        only_gpg_subkeys = g.subkeys.keys() - mine.keys()

        # User IDs: the same, with the same revocation state.
        uids = {u.raw: u for u in c.user_ids}
        for raw in uids.keys() & g.uids.keys():
            assert (g.uids[raw] == b"r") == uids[raw].revoked, (fpr, raw)
        assert not uids.keys() - g.uids.keys(), fpr
        only_gpg_uids = g.uids.keys() - uids.keys()

        if only_gpg_uids or only_gpg_subkeys:
            w = walk(split_packets(c.data))
            for comp in w.user_ids:
                if comp.packet.body in only_gpg_uids:
                    assert g.uids[comp.packet.body] == b"r", (fpr, comp.packet.body)
                    assert comp.valid(USER_ID_CERTIFICATIONS) == [], (fpr, comp.packet.body)
                    assert comp.valid((CERTIFICATION_REVOCATION,)), (fpr, comp.packet.body)
                    differences["revocation-only user IDs"] += 1
            for comp in w.subkeys:
                if fingerprint_of(comp.packet.body).hex in only_gpg_subkeys:
                    assert not any(s.by_primary for s in comp.sigs), (fpr, comp.packet)
                    differences["subkeys whose binding Sequoia cannot parse"] += 1
            assert sum(differences.values()) >= len(only_gpg_uids) + len(only_gpg_subkeys)

        # What is served parses, and carries only the key's own signatures.
        served = publishable(c, list(uids))
        assert Cert.from_bytes(served).fingerprint.upper() == fpr

        # What lookups serve is computed once, by the walk that parsed an upload, and kept
        # in parts (``ServedForm``). Parsing the stored bytes again, as a later merge or an
        # attestation change does, must give exactly the same parts, or what is served
        # would depend on which path wrote it.
        again = parse_certificate(c.data, limits)
        assert again.served == c.served, fpr
        assert again.data == c.data and again.digest == c.digest, fpr

    # The differences stay the known, explained ones.
    assert differences["subkeys whose binding Sequoia cannot parse"] <= 3, dict(differences)
    assert set(differences) <= {
        "revocation-only user IDs",
        "subkeys whose binding Sequoia cannot parse",
    }
