"""The real control plane's keys, certificates and logins, checked without starting it (openssl only)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from jibri_sandbox.controlplane import BinaryMissing
from jibri_sandbox.controlplane.binaries import find
from jibri_sandbox.controlplane.pki import generate, new_identity


def test_logins_are_one_csv_line_each_and_secret(tmp_path: Path) -> None:
    admin, operator = new_identity("admin", "system:masters"), new_identity("jibri-operator")
    pki = generate(tmp_path / "pki", "10.0.0.0/24", [admin, operator])
    lines = pki.token_file.read_text().splitlines()
    assert lines == [
        f'{admin.token},admin,admin,"system:masters"',
        f"{operator.token},jibri-operator,jibri-operator",
    ]
    for secret in (pki.token_file, pki.ca_key, pki.serving_key, pki.sa_key):
        assert secret.stat().st_mode & 0o077 == 0, f"{secret.name} is readable by others"
    assert admin.token not in repr(admin) and len(admin.token) >= 40


def test_the_serving_certificate_names_loopback_and_the_service_ip(tmp_path: Path) -> None:
    pki = generate(tmp_path / "pki", "10.0.0.0/24", [])
    text = subprocess.run(
        ["openssl", "x509", "-in", str(pki.serving_cert), "-noout", "-ext", "subjectAltName"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for name in (
        "IP Address:127.0.0.1",
        "IP Address:10.0.0.1",
        "DNS:localhost",
        "DNS:kubernetes.default.svc",
    ):
        assert name in text
    context = ssl.create_default_context(cafile=str(pki.ca_cert))  # the CA loads as a trust anchor
    assert context.cert_store_stats()["x509_ca"] == 1
    subprocess.run(
        ["openssl", "verify", "-CAfile", str(pki.ca_cert), str(pki.serving_cert)],
        check=True,
        capture_output=True,
    )


def test_a_missing_binary_says_how_to_build_it() -> None:
    with pytest.raises(BinaryMissing, match="make control-plane"):
        find("kube-nonexistent")
