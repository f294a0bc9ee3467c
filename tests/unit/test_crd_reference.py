"""docs/crd-reference.md is generated from the CRD schemas, and the committed copy is current."""

from __future__ import annotations

import subprocess
import sys

import yaml
from deploy import ROOT

GENERATOR = ROOT / "tools" / "crd_reference.py"
REFERENCE = ROOT / "docs" / "crd-reference.md"


def test_the_committed_reference_is_current() -> None:
    checked = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr + "\nRegenerate it: python tools/crd_reference.py"


def test_every_field_of_every_crd_is_in_the_reference() -> None:
    text = REFERENCE.read_text()

    def paths(schema: dict, prefix: str) -> list[str]:
        found = []
        if schema.get("type") == "array":
            return paths(schema.get("items") or {}, prefix + "[]")
        for name, child in (schema.get("properties") or {}).items():
            found.append(f"{prefix}.{name}")
            found += paths(child, f"{prefix}.{name}")
        return found

    for path in sorted(ROOT.glob("crds/*.jibri.dev.yaml")):
        crd = yaml.safe_load(path.read_text())
        kind = crd["spec"]["names"]["kind"]
        assert f"## {kind} (jibri.dev/v1alpha1)" in text
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        for part in ("spec", "status"):
            for field in paths(schema[part], part):
                assert f"| `{field}` |" in text, f"{kind}: {field}"
