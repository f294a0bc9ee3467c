"""The sandbox API server's fault switches, seen by real clients and recovered from."""

from __future__ import annotations

from pathlib import Path

import pytest
from apiserver_fixture import start_process
from kubernetes import client, config

pytestmark = pytest.mark.e2e


def test_restore_loads_what_the_last_server_saved(tmp_path: Path) -> None:
    directory = tmp_path / "apiserver"
    first = start_process(directory)
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(first.kubeconfig)))
    made = core.create_namespaced_config_map("default", {"metadata": {"name": "kept"}, "data": {"k": "v"}})
    first.stop()  # SIGTERM: the objects are saved
    again = start_process(directory, "--restore")
    try:
        core = client.CoreV1Api(config.new_client_from_config(config_file=str(again.kubeconfig)))
        kept = core.read_namespaced_config_map("kept", "default")
        assert (kept.metadata.uid, kept.metadata.resource_version, kept.data) == (
            made.metadata.uid, made.metadata.resource_version, {"k": "v"})  # fmt: skip
        assert [n.metadata.name for n in core.list_namespace().items] == [
            "default", "kube-node-lease", "kube-public", "kube-system"]  # fmt: skip
    finally:
        again.stop()
    fresh = start_process(directory)  # without --restore: a new world
    try:
        core = client.CoreV1Api(config.new_client_from_config(config_file=str(fresh.kubeconfig)))
        assert core.list_namespaced_config_map("default").items == []
    finally:
        fresh.stop()
