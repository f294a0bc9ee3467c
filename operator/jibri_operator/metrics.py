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
SESSIONS: Final = Gauge(
    "jibri_operator_sessions",
    "RecordingSessions this operator is following, by phase",
    ["phase"],
    registry=REGISTRY,
)
TIME_TO_RECORDING: Final = Histogram(
    "jibri_operator_time_to_recording_seconds",
    "From the operator taking up a session to its Jibri recording (on report, or a legacy busy presence)",
    ["namespace"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
    registry=REGISTRY,
)
BUSY_RETRIES: Final = Counter(
    "jibri_operator_busy_retries_total",
    "Starts a Jibri answered busy (another controller took it first); the session picked another",
    ["namespace", "environment"],
    registry=REGISTRY,
)
POOL_PODS: Final = Gauge(
    "jibri_operator_pool_pods",
    "A JibriPool's pods, by state (starting, idle, busy, unhealthy, draining)",
    ["namespace", "pool", "state"],
    registry=REGISTRY,
)
SCALE_DECISIONS: Final = Counter(
    "jibri_operator_scale_decisions_total",
    "Pods a JibriPool created or removed, by reason (scale-up, scale-down, replace, rollout, stuck)",
    ["namespace", "pool", "reason"],
    registry=REGISTRY,
)
API_ERRORS: Final = Counter(
    "jibri_operator_api_errors_total",
    "Failed calls of the operator to the Kubernetes API, by verb and HTTP status",
    ["verb", "code"],
    registry=REGISTRY,
)
LEADER: Final = Gauge(
    "jibri_operator_leader",
    "1 while this replica acts: it holds the leader-election Lease (or runs without election)",
    registry=REGISTRY,
)
API_FORBIDDEN: Final = Counter(
    "jibri_operator_api_forbidden_total",
    "The operator's own API calls the server refused (HTTP 403: its role lacks the verb), by verb and resource",
    ["verb", "resource"],
    registry=REGISTRY,
)
