"""Pure decision logic: the registry of Jibris, selection, and (later) scaling policy.

No I/O, no kopf, no kubernetes, no XMPP: callers pass observations and the
clock in, and act on the decisions that come out.
"""
