"""The embedded world for `make demo` and the tests: a Kubernetes API server
emulation, a kubelet, a real Prosody and simulated Jibris.

The operator never imports this package; it talks to it over the same wire
(HTTPS, XMPP) it would use against a real cluster and real Jibris.
"""
