"""The image's shape, read from the Dockerfile (there is no Docker engine to build it here):
a wheel built in one stage and installed into a slim non-root one, no secrets, the
operator as entry point, and the Python that CI checks the code with."""

from __future__ import annotations

import re
import tomllib

import yaml
from deploy import CHART, ROOT, dockerfile_instructions, entrypoint

from jibri_operator import __version__
from jibri_operator.cli import build_parser

INSTRUCTIONS = dockerfile_instructions()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, args in INSTRUCTIONS:
        if keyword == "FROM":
            result.append([])
        assert result, "the Dockerfile starts with FROM (ARG aside)"
        result[-1].append((keyword, args))
    return result


def ci_python() -> str:
    """The Python minor version CI type-checks and lints for (the floor of requires-python)."""
    mypy = str(PYPROJECT["tool"]["mypy"]["python_version"])
    ruff = str(PYPROJECT["tool"]["ruff"]["target-version"])
    floor = re.fullmatch(r">=\s*(3\.\d+)", PYPROJECT["project"]["requires-python"])
    assert floor is not None
    assert ruff == "py" + mypy.replace(".", "") and floor.group(1) == mypy
    return mypy


def test_a_build_stage_makes_the_wheel_and_a_runtime_stage_installs_only_it() -> None:
    build, runtime = stages()
    assert build[0][1].endswith(" AS build"), "the first stage is named build"
    assert any(k == "RUN" and "pip wheel" in a for k, a in build)
    installs = [a for k, a in runtime if k == "RUN" and "pip install" in a]
    assert len(installs) == 1
    (install,) = installs
    assert "--no-index" in install, "the runtime installs the built wheels, nothing fetched anew"
    assert "from=build" in install
    assert "[" not in install.split("pip install", 1)[1], "no extras (dev, sandbox) in the image"
    assert not any(k == "COPY" and "--from" not in a for k, a in runtime), "no sources in the runtime"


def test_both_stages_use_the_python_of_ci_slim() -> None:
    images = [args.split()[0] for keyword, args in INSTRUCTIONS if keyword == "FROM"]
    assert images == [f"python:{ci_python()}-slim"] * 2


def test_it_runs_as_a_numeric_non_root_user() -> None:
    users = [args for keyword, args in stages()[-1] if keyword == "USER"]
    assert users, "the runtime stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric, so the kubelet can check runAsNonRoot"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # The chart and the kustomize base run it as that same uid.
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid)


def test_the_entrypoint_is_the_operator_and_every_deployment_flag_parses() -> None:
    assert entrypoint() == ["jibri-operator", "run"]
    assert not any(keyword == "CMD" for keyword, _ in INSTRUCTIONS), "flags come from the Deployment"
    build_parser().parse_args(entrypoint()[1:])  # no flags at all: every namespace


def test_no_secret_is_baked_in() -> None:
    suspicious = re.compile(r"(?i)(password|passwd|secret|token|api[_-]?key|credential|streamkey)")
    for keyword, args in INSTRUCTIONS:
        if keyword in ("ENV", "ARG", "LABEL"):
            assert not suspicious.search(args), f"{keyword} {args}"
        if keyword in ("COPY", "ADD"):
            assert not re.search(r"(?i)(\.env\b|\.pem|\.key\b|kubeconfig|\.kube|secret)", args), args
    text = (ROOT / "Dockerfile").read_text()
    assert "--mount=type=secret" not in text


def test_the_chart_and_the_base_default_to_this_version_of_the_image() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert chart["appVersion"] == __version__ == PYPROJECT["project"]["version"]
    assert values["image"]["tag"] in ("", __version__), "empty: the chart's appVersion"
    kustomization = yaml.safe_load((ROOT / "manifests" / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    assert image["newName"] == values["image"]["repository"]
    assert image["newTag"] == __version__
