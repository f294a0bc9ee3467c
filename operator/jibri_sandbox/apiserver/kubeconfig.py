"""Write the kubeconfig clients use: server URL, the CA inline, a bearer token.

Written to a temporary name and renamed, so a file that exists is complete and
the server behind it is already listening (the fixture waits on exactly that).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml

CONTEXT = "jibri-sandbox"


def write(path: Path, url: str, ca_pem: bytes, token: str, namespace: str = "default") -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT,
                "cluster": {"server": url, "certificate-authority-data": base64.b64encode(ca_pem).decode()},
            }
        ],
        "users": [{"name": CONTEXT, "user": {"token": token}}],
        "contexts": [
            {"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace}}
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
