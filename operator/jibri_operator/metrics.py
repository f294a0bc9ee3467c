"""Prometheus metrics. Labels carry names of Kubernetes objects and states, never secrets."""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY: Final = CollectorRegistry(auto_describe=True)

JIBRIS: Final = Gauge(
    "jibri_operator_jibris",
    "Jibris seen in an environment's brewery, by state",
    ["namespace", "environment", "state"],
    registry=REGISTRY,
)
BREWERY_JOINED: Final = Gauge(
    "jibri_operator_brewery_joined",
    "1 while the operator is in the environment's brewery",
    ["namespace", "environment"],
    registry=REGISTRY,
)
BREWERY_RECONNECTS: Final = Counter(
    "jibri_operator_brewery_reconnects_total",
    "Times the operator lost its brewery connection and reconnected",
    ["namespace", "environment"],
    registry=REGISTRY,
)
START_ANSWERS: Final = Counter(
    "jibri_operator_start_answers_total",
    "Answers to start commands, by outcome (accepted, busy, retry, failed, timeout)",
    ["namespace", "environment", "outcome"],
    registry=REGISTRY,
)
ASSIGN_SECONDS: Final = Histogram(
    "jibri_operator_assign_seconds",
    "From the operator taking up a session to a Jibri accepting its start",
    ["namespace"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
SESSION_PHASES: Final = Counter(
    "jibri_operator_session_phase_transitions_total",
    "RecordingSession phase transitions, by the phase entered",
    ["namespace", "phase"],
    registry=REGISTRY,
)
WAITING_SESSIONS: Final = Gauge(
    "jibri_operator_waiting_sessions",
    "Sessions waiting for an idle Jibri",
    ["namespace", "environment"],
    registry=REGISTRY,
)
API_FORBIDDEN: Final = Counter(
    "jibri_operator_api_forbidden_total",
    "The operator's own API calls the server refused (HTTP 403: its role lacks the verb), by verb and resource",
    ["verb", "resource"],
    registry=REGISTRY,
)
