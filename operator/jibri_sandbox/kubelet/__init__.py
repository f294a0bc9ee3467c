"""Sandbox: kubelet."""
