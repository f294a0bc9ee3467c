"""Render the jibri.conf (HOCON) a pool's Jibri pods read."""
