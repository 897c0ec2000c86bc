"""What the About page says about the protocols this server speaks, as data.

The page renders it for the server it runs on (real base URL and host in every example)
and shows only protocols whose routes are mounted. ``python -m attester.web.apidoc
[BASE_URL]`` prints the same data as Markdown, the form ``docs/protocols.md`` uses, so the
document and the page are generated from one source and cannot drift apart.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

from attester.openpgp.wkd import wkd_hash

SAMPLE_EMAIL = "alice@example.org"
SAMPLE_FINGERPRINT = "0123456789ABCDEF0123456789ABCDEF01234567"
SAMPLE_KEY_ID = SAMPLE_FINGERPRINT[-16:]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    summary: str
    example: str  # a shell command; {base}, {host}, {hkp}, {email}, {fpr}, ... filled in

    def command(self, base_url: str) -> str:
        return _fill(self.example, base_url)


@dataclass(frozen=True)
class Protocol:
    slug: str  # the HTML anchor
    name: str
    summary: str
    clients: str
    spec: str  # where the protocol is specified
    probe: str  # a path that is routed when this server speaks the protocol
    endpoints: tuple[Endpoint, ...]


def hkp_url(base_url: str) -> str:
    """The keyserver URL GnuPG takes for a server at ``base_url``."""
    parts = urlsplit(base_url)
    scheme = "hkps" if parts.scheme == "https" else "hkp"
    return f"{scheme}://{parts.netloc}{parts.path}"


def _fill(template: str, base_url: str) -> str:
    parts = urlsplit(base_url)
    local, _, domain = SAMPLE_EMAIL.partition("@")
    return template.format(
        base=base_url,
        host=parts.netloc,
        hkp=hkp_url(base_url),
        email=SAMPLE_EMAIL,
        email_url=SAMPLE_EMAIL.replace("@", "%40"),
        local=local,
        domain=domain,
        wkd=wkd_hash(local),
        fpr=SAMPLE_FINGERPRINT,
        keyid=SAMPLE_KEY_ID,
    )


PROTOCOLS: tuple[Protocol, ...] = (
    Protocol(
        slug="vks",
        name="VKS API (keys.openpgp.org)",
        summary="Look keys up by fingerprint, key ID or verified address; upload a key and "
        "ask for verification mails. Answers are ASCII-armored keys or JSON.",
        clients="Thunderbird, OpenKeychain, Sequoia sq, FlowCrypt, scripts",
        spec="https://keys.openpgp.org/about/api",
        probe="/vks/v1/by-fingerprint/" + SAMPLE_FINGERPRINT,
        endpoints=(
            Endpoint(
                "GET",
                "/vks/v1/by-fingerprint/{FINGERPRINT}",
                "The key with this primary or subkey fingerprint (40 or 64 hex digits). "
                "Served with its verified user IDs, or without any when none is verified.",
                "curl {base}/vks/v1/by-fingerprint/{fpr}",
            ),
            Endpoint(
                "GET",
                "/vks/v1/by-keyid/{KEY-ID}",
                "Keys whose primary key or a subkey has this 16-digit key ID.",
                "curl {base}/vks/v1/by-keyid/{keyid}",
            ),
            Endpoint(
                "GET",
                "/vks/v1/by-email/{ADDRESS}",
                "The key published for this address; only verified addresses are found.",
                "curl {base}/vks/v1/by-email/{email_url}",
            ),
            Endpoint(
                "POST",
                "/vks/v1/upload",
                'Upload a key as JSON {"keytext": "..."}; the answer has a token and the '
                "state of each address of the key.",
                "jq -n --rawfile k key.asc '{{keytext: $k}}' | "
                "curl -H 'Content-Type: application/json' -d @- {base}/vks/v1/upload",
            ),
            Endpoint(
                "POST",
                "/vks/v1/request-verify",
                'Mail a verification link to addresses of the uploaded key: {"token": '
                '"...", "addresses": ["..."]}.',
                "curl -H 'Content-Type: application/json' "
                '-d \'{{"token": "TOKEN", "addresses": ["{email}"]}}\' '
                "{base}/vks/v1/request-verify",
            ),
        ),
    ),
    Protocol(
        slug="hkp",
        name="HKP (HTTP Keyserver Protocol)",
        summary="The protocol of GnuPG's --recv-keys, --search-keys and --send-keys. A key "
        "sent to the server gets a verification mail per address.",
        clients="GnuPG (dirmngr), Sequoia sq, SKS and Hockeypuck peers",
        spec="https://datatracker.ietf.org/doc/draft-gallagher-openpgp-hkp/",
        probe="/pks/lookup",
        endpoints=(
            Endpoint(
                "GET",
                "/pks/lookup?op=get&search={QUERY}",
                "The key for an address, 0x-fingerprint or 0x-key ID.",
                "gpg --keyserver {hkp} --recv-keys {fpr}",
            ),
            Endpoint(
                "GET",
                "/pks/lookup?op=index&options=mr&search={QUERY}",
                "A machine-readable list of matching keys; free text matches verified user IDs.",
                "gpg --keyserver {hkp} --search-keys {email}",
            ),
            Endpoint(
                "POST",
                "/pks/add",
                "Upload keys as the form field keytext.",
                "gpg --keyserver {hkp} --send-keys {fpr}",
            ),
        ),
    ),
    Protocol(
        slug="wkd",
        name="Web Key Directory",
        summary="Mail clients find the key of an address at a URL derived from it. This "
        "server answers for a domain once openpgpkey.{DOMAIN} points at it; the hash is "
        "the z-base-32 SHA-1 of the lowercased local part.",
        clients="GnuPG (--locate-keys), Thunderbird, K-9/Thunderbird for Android, Mailvelope",
        spec="https://datatracker.ietf.org/doc/draft-koch-openpgp-webkey-service/",
        probe="/.well-known/openpgpkey/policy",
        endpoints=(
            Endpoint(
                "GET",
                "/.well-known/openpgpkey/{DOMAIN}/hu/{HASH}?l={LOCAL-PART}",
                "Advanced method: the binary key with only that address's user ID.",
                "curl -o key.gpg '{base}/.well-known/openpgpkey/{domain}/hu/{wkd}?l={local}'",
            ),
            Endpoint(
                "GET",
                "/.well-known/openpgpkey/{DOMAIN}/policy",
                "The policy file of a served domain.",
                "curl {base}/.well-known/openpgpkey/{domain}/policy",
            ),
        ),
    ),
    Protocol(
        slug="flowcrypt",
        name="FlowCrypt Attester API",
        summary="The API FlowCrypt's extension and apps use: look a key up, or submit one "
        "for an address (a confirmation mail goes to it).",
        clients="FlowCrypt browser extension, iOS and Android apps",
        spec="https://github.com/FlowCrypt/flowcrypt-browser/blob/master/extension/js/common/"
        "api/key-server/attester.ts",
        probe="/pub/" + SAMPLE_EMAIL,
        endpoints=(
            Endpoint(
                "GET",
                "/pub/{ADDRESS-OR-FINGERPRINT-OR-KEY-ID}",
                "The armored key; by address only once the address is verified.",
                "curl {base}/pub/{email}",
            ),
            Endpoint(
                "POST",
                "/pub/{ADDRESS}",
                "Submit the armored key in the body; the address gets a confirmation mail.",
                "curl --data-binary @key.asc {base}/pub/{email}",
            ),
        ),
    ),
    Protocol(
        slug="manage",
        name="Management links",
        summary="Ask for a link, mailed to a published address, that lets its owner take "
        "addresses off the key. The answer is the same whether or not a key is published.",
        clients="scripts; people use the Manage page",
        spec="",
        probe="/manage",
        endpoints=(
            Endpoint(
                "POST",
                "/manage",
                'JSON {"email": "..."}.',
                "curl -H 'Content-Type: application/json' -d '{{\"email\": \"{email}\"}}' "
                "{base}/manage",
            ),
        ),
    ),
)


def render_markdown(base_url: str) -> str:
    """The protocols as Markdown, examples written for ``base_url``."""
    out = ["# Protocols", "", f"Examples are written for a server at `{base_url}`.", ""]
    for p in PROTOCOLS:
        out += [f"## {p.name}", "", p.summary, "", f"Clients: {p.clients}."]
        if p.spec:
            out += ["", f"Specification: <{p.spec}>"]
        out += ["", "| method | path | what |", "|---|---|---|"]
        out += [f"| {e.method} | `{e.path}` | {e.summary} |" for e in p.endpoints]
        out.append("")
        for e in p.endpoints:
            out += [f"`{e.method} {e.path}`:", "", "```sh", e.command(base_url), "```", ""]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    base = argv[1].rstrip("/") if len(argv) > 1 else "https://keys.example.org"
    sys.stdout.write(render_markdown(base))
    return 0


if __name__ == "__main__":  # pragma: no cover - a command for maintainers
    raise SystemExit(main(sys.argv))
