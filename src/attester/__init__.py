"""Attester: an OpenPGP public key server that attests email identities.

The package is split by concern: ``openpgp`` (pure certificate processing), ``store``
(schema and queries), ``service`` (the one core every protocol calls), ``attestation``
(tokens, mail, OIDC), ``protocols`` (thin HTTP adapters), ``web``, ``federation``,
``admin``, ``cli`` and ``config``.
"""

__version__ = "0.1.0"
