"""Sandbox: a simulated Jibri that reads a real jibri.conf and speaks both protocol dialects."""

from jibri_sandbox.jibri.config import (
    ControlMuc,
    Faults,
    JibriConfig,
    JibriConfigError,
    Login,
    SandboxSettings,
    XmppEnvironment,
    load_jibri_conf,
    parse_jibri_conf,
    render_sandbox_jibri_conf,
    sandbox_environment,
)
from jibri_sandbox.jibri.simulator import JibriError, ReceivedStart, SentReport, SimulatedJibri

__all__ = [
    "ControlMuc",
    "Faults",
    "JibriConfig",
    "JibriConfigError",
    "JibriError",
    "Login",
    "ReceivedStart",
    "SandboxSettings",
    "SentReport",
    "SimulatedJibri",
    "XmppEnvironment",
    "load_jibri_conf",
    "parse_jibri_conf",
    "render_sandbox_jibri_conf",
    "sandbox_environment",
]
