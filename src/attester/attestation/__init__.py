"""Proofs that a submitter controls an email address: OIDC id_tokens and emailed links."""
