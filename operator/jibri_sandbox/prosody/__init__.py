"""Sandbox: prosody."""
