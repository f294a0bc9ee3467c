"""Shared by the install tests: the repository's paths, and the chart and the kustomize
base rendered by the real tools on the PATH (helm, kubectl), never by an imitation."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "jibri-operator"
RELEASE = "jo"
NAMESPACE = "jibri-system"
FULLNAME = "jo-jibri-operator"

Object = dict[str, Any]


def tool(name: str) -> str:
    """The binary on the PATH; a clear failure (never a skip) when it is missing."""
    path = shutil.which(name)
    if path is None:
        hint = {
            "helm": "`make setup` installs the pinned Helm (v3.17.2) into the PATH",
            "kubectl": "kubectl v1.32 ships with the machine image; `make setup` installs it elsewhere",
            "lua5.1": "`make setup` installs it from apt (Debian package lua5.1)",
            "lua5.4": "`make setup` installs it from apt (Debian package lua5.4)",
        }.get(name, "install it")
        pytest.fail(f"{name} is not on the PATH: {hint}", pytrace=False)
    return path


def run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False, timeout=60)


def helm_template(values: dict[str, Any] | None = None, *extra: str) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart with ``values`` given as a values file, as a user would."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="values-") as handle:
        yaml.safe_dump(values or {}, handle)
        handle.flush()
        return run(
            [
                tool("helm"),
                "template",
                RELEASE,
                str(CHART),
                "--namespace",
                NAMESPACE,
                "--values",
                handle.name,
                *extra,
            ]
        )


def render(values: dict[str, Any] | None = None, *extra: str) -> list[Object]:
    """The chart's objects with ``values``; the test fails with Helm's message if it refuses."""
    result = helm_template(values, *extra)
    if result.returncode != 0:
        pytest.fail(f"helm template refused {json.dumps(values)}:\n{result.stderr}", pytrace=False)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def kustomize(directory: Path) -> list[Object]:
    built = run([tool("kubectl"), "kustomize", str(directory)])
    assert built.returncode == 0, built.stderr
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


def by_kind(objects: list[Object], kind: str) -> list[Object]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[Object], kind: str) -> Object:
    (found,) = by_kind(objects, kind)
    return found


def dockerfile_instructions(path: Path = ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continued lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def entrypoint() -> list[str]:
    """The image's ENTRYPOINT (exec form)."""
    (argv,) = [json.loads(args) for keyword, args in dockerfile_instructions() if keyword == "ENTRYPOINT"]
    assert isinstance(argv, list)
    return [str(part) for part in argv]
