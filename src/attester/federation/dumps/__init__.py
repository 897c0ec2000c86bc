"""Keyserver dumps: read them as a stream (``reader``), load them in batches
(``loader``), write them (``export``)."""

from attester.federation.dumps.export import ExportSummary, export_dump
from attester.federation.dumps.loader import DumpImporter, DumpSummary
from attester.federation.dumps.reader import DumpCert, DumpReader

__all__ = [
    "DumpCert",
    "DumpImporter",
    "DumpReader",
    "DumpSummary",
    "ExportSummary",
    "export_dump",
]
