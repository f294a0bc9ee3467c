"""Pin tools/k8s to a k8s.io/kubernetes release: `make pin-k8s K8S_VERSION=v1.34.4`.

k8s.io/kubernetes is not meant to be a dependency: its go.mod requires every
staging module (k8s.io/api, k8s.io/apiserver, ...) at v0.0.0 and replaces it with
./staging/src/.... A module that requires it must replace each of them with its
published release, v0.<minor>.<patch> for kubernetes v1.<minor>.<patch>. This
writes those replace directives from the release's own go.mod, so none is
forgotten, then lets `go mod tidy` pin everything else (etcd included: the
server is built at the version kube-apiserver's own go.mod asks for).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULE = "jibri-operator/tools/k8s"
TOOLS = (
    "go.etcd.io/etcd/server/v3",
    "k8s.io/kubernetes/cmd/kube-apiserver",
    "k8s.io/kubernetes/cmd/kube-controller-manager",
)


def staging_modules(kubernetes_go_mod: str) -> list[str]:
    """The modules k8s.io/kubernetes replaces with its own ./staging folders."""
    return re.findall(r"^\s*(k8s\.io/\S+)\s+=>\s+\./staging/", kubernetes_go_mod, re.MULTILINE)


def go_mod(version: str, staging: list[str]) -> str:
    match = re.fullmatch(r"v1\.(\d+)\.(\d+)", version)
    if not match:
        raise SystemExit(f"{version}: expected a release like v1.34.4")
    release = f"v0.{match.group(1)}.{match.group(2)}"
    tools = "".join(f"\t{tool}\n" for tool in TOOLS)
    replaces = "".join(f"\t{module} => {module} {release}\n" for module in staging)
    return (
        f"module {MODULE}\n\ngo 1.24.0\n\n"
        # the GODEBUG defaults kubernetes builds its own binaries with (its go.mod says the same)
        "godebug default=go1.24\n\n"
        f"tool (\n{tools})\n\nrequire k8s.io/kubernetes {version}\n\nreplace (\n{replaces})\n"
    )


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    version = sys.argv[1]
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    with tempfile.TemporaryDirectory() as outside:  # no go.mod here: download the release itself
        info = json.loads(
            subprocess.run(
                ["go", "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
                cwd=outside, env=env, check=True, capture_output=True, text=True,
            ).stdout
        )  # fmt: skip
    staging = staging_modules(Path(info["GoMod"]).read_text())
    (HERE / "go.mod").write_text(go_mod(version, staging))
    (HERE / "go.sum").unlink(missing_ok=True)
    subprocess.run(["go", "mod", "tidy"], cwd=HERE, env=env, check=True)
    print(f"tools/k8s pinned to k8s.io/kubernetes {version} with {len(staging)} staging replaces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
