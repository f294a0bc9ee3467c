"""Write docs/crd-reference.md from the CRD schemas in crds/.

    python tools/crd_reference.py          # rewrite docs/crd-reference.md
    python tools/crd_reference.py --check  # exit 1 if it is not current (tests/unit/test_crd_reference.py)

Everything in the reference comes from the schemas: descriptions, types, defaults,
enums, patterns, bounds, CEL rules and printer columns. Edit the CRDs, then run this.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT / "crds"
OUTPUT = ROOT / "docs" / "crd-reference.md"

# The kinds in the order a reader meets them: where, with what, what.
ORDER = ("XmppEnvironment", "JibriPool", "RecordingSession")


def load_crds(directory: Path = CRDS) -> list[dict[str, Any]]:
    crds = [yaml.safe_load(path.read_text()) for path in sorted(directory.glob("*.yaml"))]
    crds = [crd for crd in crds if crd.get("kind") == "CustomResourceDefinition"]
    known = {crd["spec"]["names"]["kind"]: crd for crd in crds}
    return [known[kind] for kind in ORDER if kind in known] + [
        crd for kind, crd in sorted(known.items()) if kind not in ORDER
    ]


def cell(text: Any) -> str:
    """Markdown table cell text: one line, pipes escaped (GitHub honours that in code spans too)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(value: Any) -> str:
    """A value as inline code: strings as they are, anything else as JSON."""
    rendered = value if isinstance(value, str) else json.dumps(value)
    return "`" + rendered.replace("`", "'") + "`"


def type_of(schema: dict[str, Any]) -> str:
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return f"[]{type_of(schema.get('items') or {})}"
    if kind == "object" and "properties" not in schema:
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return "object (free-form)"
        if "additionalProperties" in schema:
            return f"map[string]{type_of(schema['additionalProperties'])}"
    if schema.get("x-kubernetes-int-or-string"):
        return "int or string"
    if "format" in schema:
        return f"{kind} ({schema['format']})"
    return kind


def constraints(schema: dict[str, Any]) -> list[str]:
    found: list[str] = []
    if "default" in schema:
        found.append(f"default {code(schema['default'])}")
    if "enum" in schema:
        found.append("one of " + ", ".join(code(value) for value in schema["enum"]))
    if "pattern" in schema:
        found.append(f"pattern {code(schema['pattern'])}")
    for key, word in (
        ("minimum", "min"),
        ("maximum", "max"),
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
        ("minProperties", "min properties"),
    ):
        if key in schema:
            found.append(f"{word} {schema[key]}")
    if schema.get("x-kubernetes-list-type") == "map":
        found.append(
            "list keyed by " + ", ".join(code(k) for k in schema.get("x-kubernetes-list-map-keys", []))
        )
    for rule in schema.get("x-kubernetes-validations", []):
        found.append(f"rule {code(rule['rule'])}: {rule.get('message', '')}".rstrip(": "))
    return found


def fields(schema: dict[str, Any], prefix: str) -> list[list[str]]:
    """One row per field under ``schema``, depth first, as [path, type, required, description]."""
    rows: list[list[str]] = []
    properties: dict[str, Any] = schema.get("properties") or {}
    items = schema.get("items") or {}
    if schema.get("type") == "array" and items.get("properties"):
        return fields(items, prefix + "[]")
    needed = set(schema.get("required") or [])
    for name, child in properties.items():
        path = f"{prefix}.{name}" if prefix else name
        notes = constraints(child)
        description = str(child.get("description", ""))
        if notes:
            description = (description + " " if description else "") + "(" + "; ".join(notes) + ")"
        rows.append([f"`{path}`", cell(type_of(child)), "yes" if name in needed else "", cell(description)])
        rows += fields(child, path)
    return rows


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def section(crd: dict[str, Any]) -> list[str]:
    spec = crd["spec"]
    names = spec["names"]
    lines: list[str] = []
    for version in spec["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        lines += [f"## {names['kind']} ({spec['group']}/{version['name']})", ""]
        lines += [cell(schema.get("description", "")), ""]
        facts = [
            f"- Scope: {spec['scope']}; plural `{names['plural']}`",
            "- Short names: " + ", ".join(f"`{n}`" for n in names.get("shortNames", []))
            if names.get("shortNames")
            else "",
            "- Categories: " + ", ".join(f"`{c}`" for c in names.get("categories", []))
            if names.get("categories")
            else "",
            "- Subresources: " + ", ".join(sorted(version.get("subresources", {})))
            if version.get("subresources")
            else "",
            f"- Served: {str(version.get('served', True)).lower()}, storage: {str(version.get('storage', False)).lower()}",
        ]
        lines += [fact for fact in facts if fact] + [""]
        columns = version.get("additionalPrinterColumns") or []
        if columns:
            lines += ["`kubectl get` columns (priority 1 with `-o wide`):", ""]
            lines += table(
                ["Column", "Type", "From", "Wide only"],
                [
                    [
                        cell(c["name"]),
                        cell(c["type"]),
                        f"`{c['jsonPath']}`",
                        "yes" if c.get("priority") else "",
                    ]
                    for c in columns
                ],
            )
            lines.append("")
        top_rules = ((schema.get("properties") or {}).get("spec") or {}).get("x-kubernetes-validations", [])
        for part in ("spec", "status"):
            part_schema = (schema.get("properties") or {}).get(part)
            if not part_schema:
                continue
            lines += [f"### {names['kind']}.{part}", ""]
            if part_schema.get("description"):
                lines += [cell(part_schema["description"]), ""]
            if part == "spec" and top_rules:
                lines += ["Rules across fields:", ""]
                lines += [f"- {code(rule['rule'])}: {rule.get('message', '')}" for rule in top_rules]
                lines.append("")
            lines += table(["Field", "Type", "Required", "Description"], fields(part_schema, part))
            lines.append("")
    return lines


def render(crds: list[dict[str, Any]]) -> str:
    lines = [
        "# CRD reference",
        "",
        "<!-- Generated by `python tools/crd_reference.py` from crds/*.yaml; do not edit by hand. -->",
        "",
        "The operator's resources, group `jibri.dev`. `kubectl explain <kind>.spec` shows the same",
        "descriptions on a cluster. Every kind is in the category `jibri`: `kubectl get jibri` lists them all.",
        "",
    ]
    lines += [
        f"- [{crd['spec']['names']['kind']}](#{crd['spec']['names']['kind'].lower()}-"
        f"{crd['spec']['group'].replace('.', '')}{crd['spec']['versions'][0]['name']})"
        for crd in crds
    ]
    lines.append("")
    for crd in crds:
        lines += section(crd)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed reference is stale")
    args = parser.parse_args(argv)
    text = render(load_crds())
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(
                f"{OUTPUT.relative_to(ROOT)} is stale: run make generate (python tools/crd_reference.py)",
                file=sys.stderr,
            )
            return 1
        return 0
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
