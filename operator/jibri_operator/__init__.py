"""jibri-operator: run Jitsi recording (Jibri) fleets on Kubernetes."""

__version__ = "0.1.0"
