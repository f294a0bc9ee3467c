"""Run a container's command where its volumes are, at their own paths, like a runtime does.

    python -m jibri_sandbox.kubelet.mountns --bind HOST:CONTAINER[:ro] ... -- ARGV...

The process gets a private mount namespace (unshare(CLONE_NEWNS), propagation
private, so nothing leaks back to the host), each volume is bind-mounted at its
mount path (read-only where the pod says so), and then ARGV is executed in place.
Code that reads fixed paths therefore works unchanged: the kubernetes client's
``load_incluster_config`` finds the projected service-account token and CA in
``/var/run/secrets/kubernetes.io/serviceaccount``. A missing mount point is made
as an empty directory (or file) on the host's filesystem first, as a runtime
makes it in the image's; the mount itself is seen by this process tree only.

Needs CAP_SYS_ADMIN (the sandbox kubelet runs as root). On failure it says why on
stderr and exits 127, so the container shows as failed with that in its log.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount(libc: ctypes.CDLL, source: str | None, target: str, flags: int) -> None:
    result = libc.mount(
        source.encode() if source is not None else None, target.encode(), None, ctypes.c_ulong(flags), None
    )
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source or ''} on {target}: {os.strerror(errno)}")


def parse(argv: list[str]) -> tuple[list[tuple[Path, Path, bool]], list[str]]:
    """(binds, command) from ``--bind HOST:CONTAINER[:ro] ... -- ARGV``."""
    if "--" not in argv:
        raise SystemExit("usage: mountns [--bind HOST:CONTAINER[:ro]]... -- ARGV...")
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]
    binds = []
    for index in range(0, len(options), 2):
        if options[index] != "--bind" or index + 1 >= len(options):
            raise SystemExit(f"mountns: unexpected {options[index]!r}")
        host, _, rest = options[index + 1].partition(":")
        target, _, mode = rest.partition(":")
        binds.append((Path(host), Path(target), mode == "ro"))
    if not command:
        raise SystemExit("mountns: no command")
    return binds, command


def enter(binds: list[tuple[Path, Path, bool]]) -> None:
    """A private mount namespace with ``binds`` in place (nested ones after their parents)."""
    libc = _libc()
    if libc.unshare(CLONE_NEWNS) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare(CLONE_NEWNS): {os.strerror(errno)} (the kubelet must run as root)")
    _mount(libc, None, "/", MS_REC | MS_PRIVATE)
    # Every source is held open before the first mount: a mount (say on /tmp) may hide the
    # host path of a later source. The descriptors close on exec.
    sources = [
        (os.open(host, os.O_PATH), host.is_dir(), target, read_only) for host, target, read_only in binds
    ]
    for fd, is_dir, target, read_only in sorted(sources, key=lambda bind: len(bind[2].parts)):
        if is_dir:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(exist_ok=True)
        _mount(libc, f"/proc/self/fd/{fd}", str(target), MS_BIND | MS_REC)
        if read_only:
            _mount(libc, None, str(target), MS_REMOUNT | MS_BIND | MS_RDONLY)


def main(argv: list[str] | None = None) -> int:
    binds, command = parse(sys.argv[1:] if argv is None else argv)
    try:
        enter(binds)
    except OSError as error:
        print(f"sandbox runtime: cannot mount the container's volumes: {error}", file=sys.stderr, flush=True)
        return 127
    os.execv(command[0], command)  # noqa: S606 - exec in place, as a runtime does
    return 127  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
