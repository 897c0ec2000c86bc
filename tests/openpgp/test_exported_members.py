"""The public surface of ``attester.openpgp`` is declared, sorted, and nothing leaks."""

from __future__ import annotations

import inspect

import attester.openpgp as openpgp
from attester.openpgp import certificates, digest, errors, model, types


def test_all_is_sorted_and_complete() -> None:
    assert openpgp.__all__ == sorted(openpgp.__all__)
    for name in openpgp.__all__:
        assert hasattr(openpgp, name), name
    public_modules = (certificates, digest, errors, model, types)
    for module in public_modules:
        for name, member in vars(module).items():
            if name.startswith("_") or inspect.ismodule(member):
                continue
            if getattr(member, "__module__", None) == module.__name__:
                assert name in openpgp.__all__, f"{module.__name__}.{name} is not exported"


def test_every_error_is_an_openpgp_error() -> None:
    for name in openpgp.__all__:
        member = getattr(openpgp, name)
        if inspect.isclass(member) and issubclass(member, Exception):
            assert issubclass(member, openpgp.OpenPGPError), name
