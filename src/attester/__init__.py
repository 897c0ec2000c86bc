"""Attester: an OpenPGP public key server that attests email identities.

The package is split by concern, each layer importing only those before it:

    openpgp      pure certificate processing: parse, validate, merge, what is served
    config       the one frozen Settings object
    outbound     what every outgoing HTTP client shares (one TLS context)
    recon        SKS set reconciliation: GF(p) math, prefix tree, wire protocol, sessions
    store        schema, migrations, queries (no rules)
    attestation  mail rendering and delivery, OIDC id tokens
    service      the rules every entry point shares: lookups, the one ingest path,
                 publication, submission, verification, management, imports, the
                 operator's policy and removals, parsing in a process pool
    federation   other keyservers: upstream lookups, LDAP directories, mirrors, dumps
    http         what every HTTP adapter shares: bodies, rendering, app services, the
                 access guard, kept answers, the front end and its workers
    protocols    thin adapters: FlowCrypt (and its enterprise probe), VKS, HKP, WKD
    web          the pages
    admin        the admin API and ``attester admin``
    app, cli     the ASGI application and the ``attester`` command

CONTRIBUTING.md shows where new code goes.
"""

__version__ = "0.1.0"
