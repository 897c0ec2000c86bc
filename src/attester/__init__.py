"""Attester: an OpenPGP public key server that attests email identities.

The package is split by concern, each layer importing only those before it:

    openpgp      pure certificate processing: parse, validate, merge, what is served
    config       the one frozen Settings object
    recon        SKS set reconciliation: GF(p) math, prefix tree, wire protocol, sessions
    store        schema, migrations, queries (no rules)
    attestation  mail rendering and delivery, OIDC id tokens
    service      the rules every entry point shares: lookups, the one ingest path,
                 publication, submission, verification, management, imports
    federation   other keyservers: upstream lookups, LDAP directories, mirrors, dumps
    http         what every HTTP adapter shares: bodies, rendering, app services
    protocols    thin adapters: FlowCrypt, VKS, HKP, WKD
    web          the pages
    app, cli     the ASGI application and the ``attester`` command

CONTRIBUTING.md shows where new code goes.
"""

__version__ = "0.1.0"
