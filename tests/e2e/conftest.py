"""Fixtures shared by the e2e tests live in their own modules; this makes them visible here."""

from apiserver_fixture import apiserver  # noqa: F401
from operator_fixture import cluster, env, operator  # noqa: F401
from sim import jibris  # noqa: F401
