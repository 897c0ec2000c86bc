"""Reconciliation wired to this server: the database tree, the known-digest test, and
the ingest of recovered keys through the one ingest path (``attester.recon`` itself
touches no database)."""

from __future__ import annotations

import logging
from collections import Counter

from prometheus_client import CollectorRegistry

from attester.config import ReconPeer, Settings
from attester.openpgp import CertificateError, Rejected, parse_keyring
from attester.recon.metrics import ReconMetrics
from attester.recon.service import ReconService
from attester.service.core import Core
from attester.service.ingest import vouched_user_ids
from attester.store.recon import ReconStore
from attester.store.views import Origin, OriginKind

log = logging.getLogger("attester.recon")


def recon_origin(peer: ReconPeer) -> Origin:
    return Origin(OriginKind.RECON, peer.label)


def ingest_recon_keys(core: Core, peer: ReconPeer, keys: list[tuple[str, bytes]]) -> Counter[str]:
    """Store keys a recon peer sent: each validated like an upload (a key that fails is
    counted as rejected and dropped), merged, and recorded as supplied by
    ``recon:<peer>``, never attested. The user IDs it carries are recorded as published
    by the peer only when the operator opted in (``serve_emails``): SKS verifies no
    address, so by default these keys are found by fingerprint and key id only."""
    counts: Counter[str] = Counter()
    parsed = []
    for digest, data in keys:
        try:
            items = parse_keyring(data, core.settings.limits)
        except CertificateError as e:
            log.info("recon key %s from %s rejected: %s", digest, peer.label, e)
            counts["rejected"] += 1
            continue
        for item in items:
            if isinstance(item, Rejected):
                log.info("recon key %s from %s rejected: %s", digest, peer.label, item.reason)
                counts["rejected"] += 1
            else:
                parsed.append((digest, item))
    if not parsed:
        return counts
    origin = recon_origin(peer)
    now = core.clock()
    with core.store.write() as tx:
        for digest, cert in parsed:
            vouched = vouched_user_ids(cert) if peer.serve_emails else []
            try:
                # ``digest`` is what the peer holds: recorded, so it is not asked for again
                # when our merge stores the key under another digest.
                merged = core.ingest.from_peer(tx, cert, origin, vouched, now, digest=digest)
            except CertificateError as e:
                # The merged certificate would exceed a limit: keep what is stored.
                log.info("recon key %s from %s not merged: %s", digest, peer.label, e)
                counts["rejected"] += 1
                continue
            counts[merged.result.value] += 1
    return counts


def recon_service(core: Core, registry: CollectorRegistry) -> ReconService:
    """The reconciliation service of an application (or of ``attester recon sync``)."""
    settings: Settings = core.settings
    return ReconService(
        settings,
        ReconStore(core.db),
        lambda peer, keys: ingest_recon_keys(core, peer, keys),
        lambda digests: core.origins.known_digests(digests),
        ReconMetrics(registry),
    )


def prepare_tree(core: Core) -> None:
    """Build the tree when it is out of step with the stored digests (a database that
    had keys before recon existed, or one restored from a dump)."""
    tree = ReconStore(core.db)
    if not tree.in_step():
        log.warning("the recon tree is out of step with the stored keys; rebuilding it")
        summary = tree.rebuild()
        log.info("recon tree rebuilt: %d elements, %d nodes", summary.elements, summary.nodes)
