"""Keys and certificates for a throwaway cluster, made with the `openssl` command at start.

One CA signs the API server's serving certificate (SANs: 127.0.0.1, localhost,
the first IP of the service range and the in-cluster names) and is the root CA
that kube-controller-manager publishes into every namespace. A separate key
signs service-account tokens, so TokenRequest and projected tokens work.
Logins are static bearer tokens (one CSV line each); a token file is as real an
authenticator as client certificates and keeps kubeconfigs the same shape as
the emulated server's. Everything secret is written with mode 0600.
"""

from __future__ import annotations

import ipaddress
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

IN_CLUSTER_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class Identity:
    """A static-token login: who it is, in which groups; the token stays out of repr and logs."""

    user: str
    groups: tuple[str, ...] = ()
    token: str = ""

    def __repr__(self) -> str:
        return f"Identity(user={self.user!r}, groups={self.groups!r})"


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path
    sa_pub: Path
    token_file: Path


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _ec_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    path.chmod(0o600)


def generate(directory: Path, service_cidr: str, identities: list[Identity]) -> Pki:
    """Make the CA, the serving certificate, the service-account keys and the token file."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    pki = Pki(
        directory,
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        sa_key=directory / "sa.key",
        sa_pub=directory / "sa.pub",
        token_file=directory / "tokens.csv",
    )
    _ec_key(pki.ca_key)
    _openssl(
        "req", "-x509", "-new", "-key", str(pki.ca_key), "-days", "365", "-subj", "/CN=jibri-sandbox-kubernetes-ca",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-out", str(pki.ca_cert),
    )  # fmt: skip
    service_ip = next(ipaddress.ip_network(service_cidr).hosts())
    sans = ",".join(
        ["IP:127.0.0.1", f"IP:{service_ip}", "DNS:localhost", *(f"DNS:{n}" for n in IN_CLUSTER_NAMES)]
    )
    extensions = directory / "apiserver.ext"
    extensions.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={sans}\n"
    )
    _ec_key(pki.serving_key)
    csr = directory / "apiserver.csr"
    _openssl("req", "-new", "-key", str(pki.serving_key), "-subj", "/CN=kube-apiserver", "-out", str(csr))
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(pki.ca_cert), "-CAkey", str(pki.ca_key), "-CAcreateserial",
        "-days", "365", "-extfile", str(extensions), "-out", str(pki.serving_cert),
    )  # fmt: skip
    _ec_key(pki.sa_key)
    _openssl("pkey", "-in", str(pki.sa_key), "-pubout", "-out", str(pki.sa_pub))
    pki.token_file.touch(mode=0o600)
    # token,user,uid[,"group,group"]: no groups column at all for a user in no group
    lines = [
        f"{i.token},{i.user},{i.user}" + (f',"{",".join(i.groups)}"' if i.groups else "") for i in identities
    ]
    pki.token_file.write_text("\n".join(lines) + "\n")
    return pki


def new_identity(user: str, *groups: str) -> Identity:
    return Identity(user, groups, secrets.token_urlsafe(32))
