"""A real Kubernetes control plane for the sandbox, from the binaries `make control-plane` pins."""

from .binaries import Binaries, BinaryMissing
from .launcher import ADMIN_USER, OPERATOR_USER, ControlPlane

__all__ = ["ADMIN_USER", "OPERATOR_USER", "Binaries", "BinaryMissing", "ControlPlane"]
