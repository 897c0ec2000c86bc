"""A real OpenLDAP directory on loopback for the LDAP tests: Debian's ``slapd``, started
with a configuration of its own in a temporary directory (never the system's), GnuPG's
keyserver schema loaded, keys stored the way ``gpg --send-keys`` to an LDAP keyserver
stores them. It listens on 127.0.0.1 only: plain LDAP (with StartTLS) and LDAPS, with a
certificate from a throw-away CA made here.

Layout (GnuPG's ``doc/ldap`` setup, for ``dc=example,dc=com``)::

    dc=example,dc=com
    ├── cn=PGPServerInfo      pgpBaseKeySpaceDN: ou=GnuPG Keys,...; pgpSoftware: GnuPG;
    │                         pgpVersion: 2 (fingerprints and mailboxes are searchable)
    ├── ou=GnuPG Keys         one pgpKeyInfo entry per keyblock: pgpCertID=<long key id>
    │   └── ou=Board          keys only the bound reader (uid=attester) may read
    └── ou=GnuPG Users        uid=attester (a reader), uid=publisher (may write keys)

Everyone may read, except below ``ou=Board``, which only the reader bound as
``uid=attester`` sees.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import ldap
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from attester.openpgp import armor, parse_certificate

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA = Path(__file__).parent / "ldap" / "gnupg-ldap-schema.ldif"
SUFFIX = "dc=example,dc=com"
KEY_SPACE = f"ou=GnuPG Keys,{SUFFIX}"
RESTRICTED = f"ou=Board,{KEY_SPACE}"  # keys only the bound reader may read
ADMIN_DN, ADMIN_PASSWORD = f"cn=admin,{SUFFIX}", "admin-secret"
READER_DN, READER_PASSWORD = f"uid=attester,ou=GnuPG Users,{SUFFIX}", "reader-secret"
PUBLISHER_DN, PUBLISHER_PASSWORD = f"uid=publisher,ou=GnuPG Users,{SUFFIX}", "publisher-secret"


def available() -> bool:
    return all(Path(p).exists() for p in (SLAPD, SLAPADD)) and shutil.which("ldapadd") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Directory:
    port: int
    tls_port: int
    ca_file: Path  # the CA that signed the server's certificate
    other_ca_file: Path  # a CA that did not

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    def add(self, ldif: str) -> None:
        """Add entries as the administrator, with OpenLDAP's own ``ldapadd``."""
        r = subprocess.run(
            ["ldapadd", "-x", "-H", self.url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD],
            input=ldif.encode(),
            capture_output=True,
            timeout=30,
        )
        if r.returncode != 0:
            raise AssertionError(f"ldapadd failed: {r.stderr.decode()}\n{ldif}")

    def add_key(
        self,
        public: bytes,
        *,
        user_ids: list[str] | None = None,
        value: bytes | None = None,
        revoked: bool = False,
        disabled: bool = False,
        restricted: bool = False,
        cert_id: str | None = None,
    ) -> str:
        """Store a keyblock as dirmngr's ``ks_ldap_put`` does (armored in ``pgpKey``, its
        ids, user IDs, fingerprints and mailboxes beside it). ``value`` replaces the
        keyblock (garbage), ``user_ids`` what the entry claims. Returns the entry's DN."""
        cert = parse_certificate(public)
        uids = user_ids if user_ids is not None else [u.text for u in cert.user_ids]
        mailboxes = sorted({u.split("<")[-1].rstrip(">").lower() for u in uids if "@" in u})
        cert_id = cert_id or cert.primary.key_id.hex
        dn = f"pgpCertID={cert_id},{RESTRICTED if restricted else KEY_SPACE}"
        block = value if value is not None else armor(cert.data).encode()
        lines = [
            f"dn: {dn}",
            "objectClass: pgpKeyInfo",
            f"pgpCertID: {cert_id}",
            f"pgpKeyID: {cert_id[-8:]}",
            f"pgpKey:: {base64.b64encode(block).decode()}",
            f"pgpKeyCreateTime: {cert.primary.created:%Y%m%d%H%M%SZ}",
            f"pgpKeyType: {cert.primary.algorithm_name.upper()}",
            f"pgpKeySize: {cert.primary.bits:05d}",
            f"pgpRevoked: {1 if revoked else 0}",
            f"pgpDisabled: {1 if disabled else 0}",
            f"gpgFingerprint: {cert.fingerprint.hex}",
            *(f"pgpUserID:: {base64.b64encode(u.encode()).decode()}" for u in uids),
            *(f"gpgMailbox: {m}" for m in mailboxes),
            *(f"pgpSubKeyID: {k.key_id.hex}" for k in cert.subkeys),
            *(f"gpgSubFingerprint: {k.fingerprint.hex}" for k in cert.subkeys),
        ]
        self.add("\n".join(lines) + "\n")
        return dn

    def delete(self, dn: str) -> None:
        conn = ldap.initialize(self.url)
        conn.simple_bind_s(ADMIN_DN, ADMIN_PASSWORD)
        try:
            conn.delete_s(dn)
        finally:
            conn.unbind_s()


def _tls(directory: Path) -> tuple[Path, Path, Path, Path]:
    """A CA, a server certificate it signed for 127.0.0.1, and an unrelated CA."""
    now = datetime.datetime.now(datetime.UTC)

    def ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return key, cert

    ca_key, ca_cert = ca("Attester test directory CA")
    _, other_cert = ca("Some other CA")
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = [directory / n for n in ("ca.pem", "other-ca.pem", "server.pem", "server.key")]
    paths[0].write_bytes(ca_cert.public_bytes(pem))
    paths[1].write_bytes(other_cert.public_bytes(pem))
    paths[2].write_bytes(server_cert.public_bytes(pem))
    paths[3].write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    paths[3].chmod(0o600)
    return paths[0], paths[1], paths[2], paths[3]


def _config(base: Path, ca: Path, cert: Path, key: Path) -> str:
    return f"""dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {base}/slapd.pid
olcTLSCACertificateFile: {ca}
olcTLSCertificateFile: {cert}
olcTLSCertificateKeyFile: {key}

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif
include: file://{SCHEMA}

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {SUFFIX}
olcDbDirectory: {base}/db
olcDbMaxSize: 67108864
olcRootDN: {ADMIN_DN}
olcRootPW: {ADMIN_PASSWORD}
olcAccess: {{0}}to attrs=userPassword by anonymous auth by * none
olcAccess: {{1}}to dn.subtree="{RESTRICTED}" by dn.exact="{READER_DN}" read by * none
olcAccess: {{2}}to dn.subtree="{KEY_SPACE}" by dn.exact="{PUBLISHER_DN}" write by * read
olcAccess: {{3}}to * by * read
"""


_BASE = f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: cn=PGPServerInfo,{SUFFIX}
objectClass: pgpServerInfo
cn: PGPServerInfo
pgpBaseKeySpaceDN: {KEY_SPACE}
pgpSoftware: GnuPG
pgpVersion: 2

dn: {KEY_SPACE}
objectClass: organizationalUnit
ou: GnuPG Keys

dn: {RESTRICTED}
objectClass: organizationalUnit
ou: Board

dn: ou=GnuPG Users,{SUFFIX}
objectClass: organizationalUnit
ou: GnuPG Users

dn: {READER_DN}
objectClass: inetOrgPerson
uid: attester
cn: Attester
sn: Attester
userPassword: {READER_PASSWORD}

dn: {PUBLISHER_DN}
objectClass: inetOrgPerson
uid: publisher
cn: Publisher
sn: Publisher
userPassword: {PUBLISHER_PASSWORD}
"""


@contextmanager
def slapd() -> Iterator[Directory]:
    """slapd on two free loopback ports until the block ends; stopped (and its files
    removed) afterwards, whatever happened."""
    base = Path(tempfile.mkdtemp(prefix="slapd", dir="/tmp"))
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    try:
        (base / "db").mkdir()
        (base / "slapd.d").mkdir()
        ca, other_ca, cert, key = _tls(base)
        (base / "config.ldif").write_text(_config(base, ca, cert, key))
        subprocess.run(
            [SLAPADD, "-n", "0", "-F", str(base / "slapd.d"), "-l", str(base / "config.ldif")],
            check=True,
            capture_output=True,
            timeout=60,
        )
        directory = Directory(_free_port(), _free_port(), ca, other_ca)
        log = (base / "slapd.log").open("wb")
        proc = subprocess.Popen(
            [
                SLAPD,
                "-d",
                "0",  # stay in the foreground: stopped by this fixture, never left behind
                "-F",
                str(base / "slapd.d"),
                "-h",
                f"{directory.url}/ {directory.ldaps_url}/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = ldap.initialize(directory.url)
                conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 1)
                conn.simple_bind_s(ADMIN_DN, ADMIN_PASSWORD)
                conn.unbind_s()
                break
            except ldap.LDAPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"slapd did not start: {(base / 'slapd.log').read_text()}"
                    ) from None
                time.sleep(0.1)
        directory.add(_BASE)
        yield directory
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if log is not None:
            log.close()
        shutil.rmtree(base, ignore_errors=True)
