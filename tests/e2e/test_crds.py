"""The CRDs refuse bad input before the operator sees it, and teach through kubectl."""

from __future__ import annotations

import subprocess
import textwrap

import pytest
from operator_fixture import Cluster

from jibri_sandbox.apiserver.testing import RunningApiServer

pytestmark = pytest.mark.e2e


def kubectl(
    apiserver: RunningApiServer, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(apiserver.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )


def session(spec: str) -> str:
    return textwrap.dedent(
        """\
        apiVersion: jibri.dev/v1alpha1
        kind: RecordingSession
        metadata:
          name: bad
          namespace: default
        spec:
        """
    ) + textwrap.indent(textwrap.dedent(spec), "  ")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("environment: meet\nmode: file\n", "spec.room: Required value"),
        (
            "environment: meet\nroom: a@conference.x\nmode: stream\n",
            "streamKeySecretRef is required when mode is stream",
        ),
        ("environment: meet\nroom: a@conference.x\nmode: tape\n", 'spec.mode: Unsupported value: "tape"'),
        ("environment: meet\nroom: not-a-jid\n", "spec.room"),
        (
            "environment: meet\nroom: a@conference.x\nmode: file\nstreamKeySecretRef: {name: k}\n",
            "streamKeySecretRef is only allowed when mode is stream",
        ),
        ("environment: meet\nroom: a@conference.x\nmaxAttempts: 0\n", "spec.maxAttempts"),
        ("environment: meet\nroom: a@conference.x\nmaxDuration: forever\n", "spec.maxDuration"),
    ],
)
def test_invalid_sessions_are_refused_with_the_field_named(
    apiserver: RunningApiServer, cluster: Cluster, spec: str, expected: str
) -> None:
    result = kubectl(apiserver, "apply", "-f", "-", stdin=session(spec))
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr


def test_room_and_mode_are_immutable(apiserver: RunningApiServer, cluster: Cluster) -> None:
    created = kubectl(
        apiserver,
        "apply",
        "-f",
        "-",
        stdin=session("environment: meet\nroom: a@conference.x\n").replace("bad", "frozen"),
    )
    assert created.returncode == 0, created.stderr
    try:
        changed = kubectl(
            apiserver, "patch", "rec", "frozen", "--type=merge", "-p", '{"spec":{"room":"b@conference.x"}}'
        )
        assert changed.returncode != 0
        assert "room is immutable" in changed.stderr
        changed = kubectl(
            apiserver, "patch", "rec", "frozen", "--type=merge", "-p", '{"spec":{"mode":"stream"}}'
        )
        assert "mode is immutable" in changed.stderr
    finally:
        kubectl(apiserver, "delete", "rec", "frozen", "--wait=false")


def test_defaults_and_explain(apiserver: RunningApiServer, cluster: Cluster) -> None:
    created = kubectl(
        apiserver,
        "apply",
        "-f",
        "-",
        stdin=session("environment: meet\nroom: a@conference.x\n").replace("bad", "defaults"),
    )
    assert created.returncode == 0, created.stderr
    try:
        spec = kubectl(apiserver, "get", "rec", "defaults", "-o", "jsonpath={.spec}").stdout
        for default in ('"mode":"file"', '"maxAttempts":5', '"pendingTimeout":"90s"', '"stop":false'):
            assert default in spec
    finally:
        kubectl(apiserver, "delete", "rec", "defaults", "--wait=false")
    explained = kubectl(apiserver, "explain", "recordingsession.spec.streamKeySecretRef")
    assert explained.returncode == 0, explained.stderr
    assert "never appears in status" in " ".join(explained.stdout.split())  # kubectl wraps long lines
    pools = kubectl(apiserver, "explain", "jibripool.spec.idleTarget")
    assert "Idle Jibris to keep warm" in " ".join(pools.stdout.split())


def test_pool_bounds_are_checked(apiserver: RunningApiServer, cluster: Cluster) -> None:
    pool = textwrap.dedent(
        """\
        apiVersion: jibri.dev/v1alpha1
        kind: JibriPool
        metadata: {name: upside-down, namespace: default}
        spec:
          environments: [meet]
          template: {spec: {containers: [{name: jibri, image: jitsi/jibri}]}}
          replicas: {min: 5, max: 2}
        """
    )
    result = kubectl(apiserver, "apply", "-f", "-", stdin=pool)
    assert result.returncode != 0
    assert "replicas.min must not exceed replicas.max" in result.stderr


def environment(spec: str) -> str:
    return textwrap.dedent(
        """\
        apiVersion: jibri.dev/v1alpha1
        kind: XmppEnvironment
        metadata: {name: bad-env, namespace: default}
        spec:
          server: {host: xmpp.example.com}
          domain: meet.example.com
          brewery: jibribrewery@internal.auth.meet.example.com
          controlLogin: {secretRef: {name: login}}
        """
    ) + textwrap.indent(textwrap.dedent(spec), "  ")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "jibri: {controlLoginSecretRef: {name: j}}\n",
            "spec.jibri.callLoginSecretRef: Required value: callLoginSecretRef is required where spec.jibri is set",
        ),
        (
            "jibri: {callLoginSecretRef: {name: r}}\n",
            "spec.jibri.controlLoginSecretRef: Required value",
        ),
        ("jibri: {}\n", "spec.jibri.callLoginSecretRef: Required value"),
        (
            "jibri: {controlLoginSecretRef: {name: j}, callLoginSecretRef: {name: r}, usageTimeout: 90s}\n",
            "usageTimeout must be whole minutes",
        ),
        ("sipBrewery: not-a-jid\n", "spec.sipBrewery"),
    ],
)
def test_invalid_environments_are_refused_with_the_field_named(
    apiserver: RunningApiServer, cluster: Cluster, spec: str, expected: str
) -> None:
    result = kubectl(apiserver, "apply", "-f", "-", stdin=environment(spec))
    assert result.returncode != 0
    assert expected in " ".join(result.stderr.split()), result.stderr


def test_a_pool_ready_environment_is_accepted_with_defaults(
    apiserver: RunningApiServer, cluster: Cluster
) -> None:
    spec = (
        "sipBrewery: jibrisipbrewery@internal.auth.meet.example.com\n"
        "jibri: {controlLoginSecretRef: {name: j}, callLoginSecretRef: {name: r}, usageTimeout: 1.5h}\n"
    )
    created = kubectl(apiserver, "apply", "-f", "-", stdin=environment(spec).replace("bad-env", "good-env"))
    assert created.returncode == 0, created.stderr
    try:
        jibri = kubectl(
            apiserver, "get", "xmppenvironment", "good-env", "-o", "jsonpath={.spec.jibri}"
        ).stdout
        assert '"usernameKey":"username"' in jibri and '"passwordKey":"password"' in jibri
    finally:
        kubectl(apiserver, "delete", "xmppenvironment", "good-env", "--wait=false")


@pytest.mark.parametrize(
    ("delivery", "environments", "expected"),
    [
        ("{mode: env}", "[a, b]", "configDelivery.mode env serves exactly one environment"),
        ("{mode: officialImage, path: /x/jibri.conf}", "[a]", "path is only used with mode mount"),
        ("{mode: mount, path: relative/jibri.conf}", "[a]", "spec.configDelivery.path"),
        ("{mode: film}", "[a]", 'spec.configDelivery.mode: Unsupported value: "film"'),
    ],
)
def test_config_delivery_is_checked(
    apiserver: RunningApiServer, cluster: Cluster, delivery: str, environments: str, expected: str
) -> None:
    pool = textwrap.dedent(
        f"""\
        apiVersion: jibri.dev/v1alpha1
        kind: JibriPool
        metadata: {{name: bad-delivery, namespace: default}}
        spec:
          environments: {environments}
          template: {{spec: {{containers: [{{name: jibri, image: jitsi/jibri}}]}}}}
          configDelivery: {delivery}
        """
    )
    result = kubectl(apiserver, "apply", "-f", "-", stdin=pool)
    assert result.returncode != 0
    assert expected in " ".join(result.stderr.split()), result.stderr


def test_category_lists_every_kind(apiserver: RunningApiServer, cluster: Cluster) -> None:
    result = kubectl(apiserver, "get", "jibri", "-A")
    assert result.returncode == 0, result.stderr
