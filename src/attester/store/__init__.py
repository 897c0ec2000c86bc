"""Storage: schema, migrations and the queries the service layer uses.

    db.py        engines, migrations, and the read/write boundary where SQLAlchemy errors
                 become ``StoreError``s (errors.py)
    schema.py    the tables
    views.py     what reads return: ``StoredCert``, ``StoredUserID``, ``Origin``
    keys.py      reads of certificates, user IDs and digests (``KeyStore``)
    writes.py    one write transaction and its storage steps (``WriteTx``)
    origins.py   what peers supplied, the upstream cache, dump exports
    tokens.py, outbox.py, secrets.py, audit in writes.py

The store keeps data; the rules (what is published, what a merge means) are
``attester.service``'s.
"""
