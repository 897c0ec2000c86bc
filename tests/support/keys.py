"""Certificates made at test time with pysequoia (real keys, real signatures)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from pysequoia import Cert, Tsk


@dataclass
class TestKey:
    """A certificate with its secret part, so tests can add user IDs and revoke."""

    tsk: Tsk  # the secret key, to make signatures
    cert: Cert  # the public certificate as it stands now

    __test__ = False  # not a pytest test class

    @classmethod
    def generate(cls, *user_ids: str) -> TestKey:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            tsk = Tsk.generate(user_ids=list(user_ids)) if user_ids else Tsk.generate()
            return cls(tsk, tsk.extract_certificate())

    @property
    def fingerprint(self) -> str:
        return str(self.cert.fingerprint).upper()

    @property
    def key_id(self) -> str:
        return self.fingerprint[-16:]

    @property
    def public(self) -> bytes:
        return bytes(self.cert)

    @property
    def armored(self) -> str:
        from attester.openpgp import armor

        return armor(self.public)

    def _certifier(self):  # type: ignore[no-untyped-def]
        return self.tsk.certifier()

    @property
    def secret_armored(self) -> str:
        return str(self.tsk)

    def with_user_id(self, uid: str) -> TestKey:
        return TestKey(self.tsk, self.cert.add_user_id(uid, self._certifier()))

    def revocation(self) -> bytes:
        return bytes(self.cert.revoke(self._certifier()))

    def revoked_public(self) -> bytes:
        return self.public + self.revocation()

    def user_id_revocation(self, uid: str) -> bytes:
        for u in self.cert.user_ids:
            if str(u) == uid:
                return bytes(self.cert.revoke_user_id(u, self._certifier()))
        raise KeyError(uid)
