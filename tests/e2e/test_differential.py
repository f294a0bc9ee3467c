"""The emulation against the real thing: differential.py's script of kubectl and client calls runs
against jibri_sandbox.apiserver and against kube-apiserver (the session's real control plane), and
their answers, normalised, must be the same, step for step, except where DELIBERATE says why not.

A difference found is either fixed in the emulation or added to DELIBERATE *and* to the
emulation's README ("Deliberate differences"); a deliberate difference that is gone must be
removed from both. The two runs go side by side (threads); the full records and every diff are
written to the test's tmp_path (printed on failure).
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from differential import SCRIPT, Server, compare, run_script

from jibri_sandbox.apiserver.testing import start_process
from jibri_sandbox.controlplane import ControlPlane

pytestmark = pytest.mark.e2e
README = Path(__file__).resolve().parents[2] / "operator" / "jibri_sandbox" / "apiserver" / "README.md"

# Step -> why the emulation answers otherwise, on purpose. Each is in the README too.
DELIBERATE = {
    "setup/namespace-contents": "no kube-controller-manager: a new namespace gets no kube-root-ca.crt "
    "ConfigMap and no default ServiceAccount",
    "apply/server-side-conflict": "server-side apply is a merge patch: no managedFields, so no field "
    "ownership and no conflicts",
    "finalizers/no-new-finalizer-while-deleting": "kube-apiserver lists the refused finalizer twice "
    "in the causes (it validates the metadata update twice); the emulation once",
}


@pytest.fixture(scope="module")
def results(real_control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("differential")
    emulated = start_process(directory / "emulated-apiserver")
    namespace = f"diff-{uuid.uuid4().hex[:6]}"
    try:
        servers = {
            "emulated": Server(emulated.kubeconfig, directory / "emulated"),
            "real": Server(real_control_plane.kubeconfig, directory / "real"),
        }
        with ThreadPoolExecutor(2) as pool:
            runs = {name: pool.submit(run_script, server, namespace) for name, server in servers.items()}
            found = {name: run.result(timeout=600) for name, run in runs.items()}
    finally:
        emulated.stop()
    differing = compare(found["emulated"], found["real"], ("emulated", "real"))
    (directory / "records.json").write_text(json.dumps(found, indent=1, sort_keys=True, default=str))
    (directory / "differences.txt").write_text("\n\n".join(f"== {k}\n{v}" for k, v in differing.items()))
    return {"differing": differing, "directory": directory, "records": found}


def test_the_script_covers_what_it_must() -> None:
    names = [step.name for step in SCRIPT]
    assert len(names) == len(set(names)), "step names are unique"
    for area in ("crud/", "apply/", "patch/", "status/", "scale/", "select/", "watch/", "finalizers/",
                 "gc/", "dryrun/", "list/", "errors/"):  # fmt: skip
        assert any(name.startswith(area) for name in names), area
    for must in ("patch/json", "patch/merge", "patch/strategic-pod-containers", "apply/server-side-create",
                 "watch/from-resource-version", "watch/initial-events-and-bookmark",
                 "watch/too-old-resource-version", "list/apply", "list/export-and-reapply"):  # fmt: skip
        assert must in names, must


def test_the_emulation_answers_as_kube_apiserver_does(results: dict[str, Any]) -> None:
    differing: dict[str, str] = results["differing"]
    unexpected = {name: diff for name, diff in differing.items() if name not in DELIBERATE}
    where = f"(records and diffs in {results['directory']})"
    assert not unexpected, f"{where}\n" + "\n\n".join(f"== {k}\n{v[:3000]}" for k, v in unexpected.items())
    gone = set(DELIBERATE) - set(differing)
    assert not gone, f"no longer different, remove from DELIBERATE and the README: {sorted(gone)} {where}"


def test_no_step_broke(results: dict[str, Any]) -> None:
    """A step that raised is a difference only if one server made it raise: none may."""
    for server, records in results["records"].items():
        broken = {name: record for name, record in records.items() if "exception" in record}
        assert not broken, f"{server}: {broken}"


def test_every_deliberate_difference_is_in_the_readme() -> None:
    text = README.read_text()
    for name in DELIBERATE:
        assert f"`{name}`" in text, f"{name} is not explained in {README}"
