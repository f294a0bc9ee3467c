"""A Kubernetes API server emulation over real HTTPS, for the tests and `make demo`.

Judged only by real clients (kubectl, the kubernetes Python client, kopf) and the
API conventions. Start it with `jibri-sandbox apiserver --kubeconfig PATH`, in
process with ``async with ApiServer() as server:``, or as a subprocess from tests
with `jibri_sandbox.apiserver.testing.start_process`.
"""

from .server import ApiServer

__all__ = ["ApiServer"]
