"""Sandbox: a real Prosody with TLS, a MUC component and fast account creation."""

from jibri_sandbox.prosody.server import Prosody, ProsodyError, XmppDomain, free_port

__all__ = ["Prosody", "ProsodyError", "XmppDomain", "free_port"]
