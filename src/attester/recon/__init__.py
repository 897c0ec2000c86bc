"""SKS reconciliation ("recon"): keeping this server's key set and an SKS or Hockeypuck
peer's in step (../shared/specs/sks-recon.md; docs/federation.md, "Reconciliation").

Pure parts, no I/O: ``field`` (GF(p)), ``decode`` (interpolation and roots), ``ptree``
(the prefix tree's arithmetic), ``wire`` (the message codec). On top of them, asyncio:
``session`` (both roles of one reconciliation), ``recovery`` (fetching what we lack over
``/pks/hashquery``) and ``service`` (the listener, gossip, metrics). Nothing here touches
the database: the tree and the ingest of recovered keys are handed in
(``store.recon``, ``service.recon``), so no package imports this one in a circle.
"""
