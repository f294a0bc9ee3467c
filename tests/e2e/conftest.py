"""Fixtures shared by the e2e tests live in their own modules; this makes them visible here."""

from apiserver_fixture import apiserver  # noqa: F401
from control_plane_fixture import real_control_plane, real_crds, real_sandbox  # noqa: F401
from operator_fixture import cluster, env, operator  # noqa: F401
