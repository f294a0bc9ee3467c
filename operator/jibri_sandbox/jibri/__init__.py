"""Sandbox: jibri."""
