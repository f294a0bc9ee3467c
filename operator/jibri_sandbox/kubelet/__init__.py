"""Sandbox kubelet: runs the sandbox node's pods; Jibri pods become simulated Jibris.

`Kubelet` is the in-process class (async context manager); `jibri-sandbox kubelet`
runs it as a process (cli.py).
"""

from .kubelet import Kubelet
from .pods import EXIT_AFTER, EXIT_CODE, FAULT, IGNORE_SIGTERM

__all__ = ["EXIT_AFTER", "EXIT_CODE", "FAULT", "IGNORE_SIGTERM", "Kubelet"]
