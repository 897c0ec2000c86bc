"""FlowCrypt's welcome mail (``POST /welcome-message``): a greeting to the address of a key
that can encrypt, at most one per address per rate-limit window, and only for a client that
proves the address with an OIDC id token (FlowCrypt's apps send one): otherwise anybody
could make this server mail any address once a window."""

from __future__ import annotations

from datetime import timedelta

from anyio import to_thread

from attester.attestation.oidc import OIDCVerifier
from attester.openpgp import CertificateError, parse_certificate
from attester.openpgp.types import Email
from attester.service._parsing import valid_emails
from attester.service.core import Core
from attester.service.errors import BadRequest
from attester.service.proof import prove_address


class Welcome:
    def __init__(self, core: Core, oidc: OIDCVerifier | None = None) -> None:
        self.core = core
        self.oidc = oidc
        self.window = timedelta(seconds=core.settings.mail_rate_window_seconds)

    async def send_proven(self, authorization: str | None, email: Email, data: bytes) -> bool:
        """``send``, once the id token in ``authorization`` proves ``email``
        (``Unauthorized`` otherwise)."""
        await prove_address(self.oidc, authorization, email)
        return await to_thread.run_sync(self.send, email, data)

    def send(self, email: Email, data: bytes) -> bool:
        """Queue the welcome mail; False when one went out within the rate-limit window."""
        try:
            cert = parse_certificate(data, self.core.settings.limits)
        except CertificateError as e:
            raise BadRequest("This key does not appear valid") from e
        now = self.core.clock()
        if email not in valid_emails(cert) or not cert.can_encrypt(now):
            raise BadRequest("This key does not appear valid")
        with self.core.store.write() as tx:
            tx.lock_address(email)
            if tx.outbox.sent_recently("welcome", email, now - self.window):
                return False
            self.core.mails.queue(
                tx, "welcome", email, {"address": email, "link": self.core.mails.link("/")}, now
            )
        return True
