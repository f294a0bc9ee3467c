"""Sandbox: apiserver."""
