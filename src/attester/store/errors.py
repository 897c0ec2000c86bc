"""Errors of the store. SQLAlchemy's own exceptions are converted here, at the one
boundary every query passes (``Database.read``/``Database.write``), and nowhere else.

    StoreError
    └── DatabaseUnavailable   the database cannot be reached, or stayed busy past its
                              timeout: the request may succeed if retried later
"""

from __future__ import annotations


class StoreError(Exception):
    pass


class DatabaseUnavailable(StoreError):
    pass
