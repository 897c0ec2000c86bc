"""Attestation: how an address becomes findable, and how its owner takes it back. One set
of services, used by every protocol (FlowCrypt ``/pub``, VKS, HKP ``/pks/add``, the web
pages) and the CLI:

    submission.py    keys from their owners: uploads, updates, OIDC id tokens
    verification.py  the emailed link, and confirming it
    management.py    the owner's management link: unpublish an address
    imports.py       the operator's import, optionally vouching for the addresses
    welcome.py       FlowCrypt's welcome mail

Paths to publication: the emailed link (``verify.confirm``), an id token for the address
(``submit.with_id_token``), and the operator (``imports.keyring(attest_emails=True)``).
Whatever the path, ``Publication.publish`` applies the conflict rule, and every mail is
queued in the same transaction as the change behind it (``Mails``).
"""

from __future__ import annotations

from dataclasses import dataclass

from attester.attestation.oidc import OIDCVerifier
from attester.service.core import Core
from attester.service.imports import Imports
from attester.service.management import Management
from attester.service.submission import Submissions
from attester.service.verification import Verification
from attester.service.welcome import Welcome


@dataclass(frozen=True)
class Attestation:
    core: Core
    submit: Submissions
    verify: Verification
    manage: Management
    imports: Imports
    welcome: Welcome

    @classmethod
    def build(cls, core: Core, oidc: OIDCVerifier | None = None) -> Attestation:
        verify = Verification(core)
        return cls(
            core=core,
            submit=Submissions(core, verify, oidc),
            verify=verify,
            manage=Management(core),
            imports=Imports(core),
            welcome=Welcome(core, oidc),
        )
