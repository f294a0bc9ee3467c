"""Where the control plane's binaries are: the ones `make control-plane` built and pinned.

Looked up in $JIBRI_SANDBOX_K8S_BIN, then the repository's `.cache/k8s/bin`, then
$PATH. The pinned folder comes before $PATH on purpose: a machine may carry an
older etcd (Debian's 3.4) or another kubectl, and the tests must meet the pins.
A missing binary is an error that says how to build it, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

ENV = "JIBRI_SANDBOX_K8S_BIN"
REPO_BIN = Path(__file__).resolve().parents[3] / ".cache" / "k8s" / "bin"


class BinaryMissing(FileNotFoundError):
    pass


def search_path() -> list[Path]:
    folders = [Path(os.environ[ENV])] if os.environ.get(ENV) else []
    return [*folders, REPO_BIN]


def pinned_bin() -> Path | None:
    """The folder of the pinned binaries, if there is one (for PATH: kubectl and helm are there too)."""
    return next((folder for folder in search_path() if folder.is_dir()), None)


def find(name: str) -> Path:
    """The first executable `name` in $JIBRI_SANDBOX_K8S_BIN, .cache/k8s/bin, or $PATH."""
    for folder in search_path():
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    looked = ", ".join(str(f) for f in search_path())
    raise BinaryMissing(f"{name} not found in {looked} or $PATH; build it with `make control-plane`")


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path

    @classmethod
    def find(cls) -> Binaries:
        return cls(find("etcd"), find("kube-apiserver"), find("kube-controller-manager"))
