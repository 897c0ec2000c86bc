"""Reconciliation wired to this server: the database tree, the known-digest test, and
the ingest of recovered keys through the one ingest path (``attester.recon`` itself
touches no database)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CollectorRegistry

from attester.config import ReconPeer, Settings
from attester.openpgp import CertificateError, ParsedCert, Rejected, Unparsable
from attester.recon.metrics import ReconMetrics
from attester.recon.service import ReconService
from attester.service.core import Core
from attester.service.errors import ServiceError
from attester.service.ingest import vouched_user_ids
from attester.service.parsing import parse_each
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
    for (digest, _), items in zip(keys, _parse(core, [data for _, data in keys]), strict=True):
        if isinstance(items, CertificateError):
            log.info("recon key %s from %s rejected: %s", digest, peer.label, items)
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
    # ``digest`` is what the peer holds: recorded, so it is not asked for again when our
    # merge stores the key under another digest. One batch: the new keys are written
    # together (a recon session recovers up to hundreds at once).
    batch: list[tuple[ParsedCert, Collection[bytes], str]] = [
        (cert, vouched_user_ids(cert) if peer.serve_emails else [], digest)
        for digest, cert in parsed
    ]
    with core.store.write() as tx:
        results = core.ingest.from_peer_many(tx, batch, origin, now)
    for (digest, _), merged in zip(parsed, results, strict=True):
        if isinstance(merged, CertificateError):
            # The merged certificate would exceed a limit: keep what is stored.
            log.info("recon key %s from %s not merged: %s", digest, peer.label, merged)
            counts["rejected"] += 1
        else:
            counts[merged.result.value] += 1
    return counts


def _parse(core: Core, blobs: list[bytes]) -> list[list[ParsedCert | Rejected] | CertificateError]:
    """Each blob parsed in the core's parsing pool, split across its workers: on every
    core, and never in the server's own process, where a peer's keys would hold the
    interpreter that lookups need. A share that overruns the pool's timeout (or breaks a
    worker) is parsed again a key at a time, so only the keys at fault are refused."""
    limits = core.settings.limits
    workers = max(1, core.parsing.workers)
    size = max(1, -(-len(blobs) // workers))
    shares = [blobs[i : i + size] for i in range(0, len(blobs), size)]

    def share(part: list[bytes]) -> list[list[ParsedCert | Rejected] | CertificateError]:
        try:
            return core.parsing.call(parse_each, part, limits)
        except ServiceError:
            if len(part) == 1:
                return [Unparsable("the key could not be parsed in time")]
        out: list[list[ParsedCert | Rejected] | CertificateError] = []
        for blob in part:
            try:
                out.extend(core.parsing.call(parse_each, [blob], limits))
            except ServiceError as e:
                out.append(Unparsable(e.message))
        return out

    if len(shares) <= 1:
        return [item for part in shares for item in share(part)]
    with ThreadPoolExecutor(len(shares), thread_name_prefix="attester-recon-parse") as pool:
        return [item for part in pool.map(share, shares) for item in part]


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
