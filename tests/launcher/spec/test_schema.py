"""`launch schema` (full_schema) is valid JSON Schema, and every example spec validates against it (issue 23).

Editors check a spec against this schema as it is typed: a keyword JSON Schema
does not know (pydantic's raw gt/le) is silently ignored there, and a type
narrower than what the loader accepts (max_runtime: integer, for '4h') marks
a good spec red.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from launcher.cli.info import full_schema
from launcher.spec import _interpolate_all, parse_duration

jsonschema = pytest.importorskip("jsonschema")

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
SPECS = sorted([*EXAMPLES.glob("*.yaml"), *EXAMPLES.glob("ci/*.yaml"), *EXAMPLES.glob("own_program/*.yaml")])

# Draft 2020-12's keywords (core, applicator, unevaluated, validation, meta-data, format, content)
KEYWORDS = {
    "$schema", "$id", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor", "$vocabulary", "$comment", "$defs",
    "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas", "prefixItems", "items", "contains",
    "properties", "patternProperties", "additionalProperties", "propertyNames", "unevaluatedItems", "unevaluatedProperties",
    "type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength",
    "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxContains", "minContains", "maxProperties",
    "minProperties", "required", "dependentRequired",
    "title", "description", "default", "deprecated", "readOnly", "writeOnly", "examples",
    "format", "contentEncoding", "contentMediaType", "contentSchema",
}  # fmt: skip
_SCHEMA_MAPS = ("$defs", "properties", "patternProperties", "dependentSchemas")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
               "unevaluatedItems", "unevaluatedProperties", "contentSchema")  # fmt: skip


def _schemas(schema: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (sub)schema object with its JSON pointer; property *names* are not mistaken for keywords."""
    if not isinstance(schema, dict):
        return  # true / false
    yield where, schema
    for key in _SCHEMA_MAPS:
        for name, sub in schema.get(key, {}).items():
            yield from _schemas(sub, f"{where}/{key}/{name}")
    for key in _SCHEMA_LISTS:
        for i, sub in enumerate(schema.get(key, [])):
            yield from _schemas(sub, f"{where}/{key}/{i}")
    for key in _SCHEMA_ONE:
        if key in schema:
            yield from _schemas(schema[key], f"{where}/{key}")


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return full_schema()


def test_the_schema_is_draft_2020_12(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_schema_uses_only_json_schema_keywords(schema: dict[str, Any]) -> None:
    unknown = {f"{where}: {key}" for where, sub in _schemas(schema) for key in sub if key not in KEYWORDS}
    assert not unknown, sorted(unknown)
    # the raw pydantic names, wherever they would hide (a value under a property named 'le' is fine: none is)
    assert not re.search(r'"(gt|ge|lt|le)":', __import__("json").dumps(schema))


def test_the_backend_sections_come_from_the_backends(schema: dict[str, Any]) -> None:
    for backend, key in (("aws", "role_arn"), ("gcp", "project"), ("azure", "workspace")):
        assert key in schema["properties"][backend]["properties"], backend


def _raw(path: Path) -> dict[str, Any]:
    """The example as an editor sees it, ${VAR} placeholders filled with a dummy value as tests/launcher/test_spec.py does."""
    text = path.read_text()
    needed = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))
    realistic = {"AWS_REGION": "us-east-1", "SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/SageMakerRole"}
    environ = {name: realistic.get(name, f"example-{name.lower().replace('_', '-')}") for name in needed}
    return _interpolate_all(yaml.safe_load(text), environ, path)


def test_there_are_examples() -> None:
    assert {p.name for p in SPECS} >= {"quickstart.yaml", "aws.yaml", "gcp.yaml", "azure.yaml", "job.yaml"}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_example_validates(schema: dict[str, Any], path: Path) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(_raw(path))]
    assert not errors, errors


@pytest.mark.parametrize(
    ("limits", "valid"),
    [
        ({"max_runtime": "4h"}, True),
        ({"max_runtime": "1h30m"}, True),
        ({"max_runtime": 3600}, True),
        ({"max_runtime": " 2D "}, True),
        ({"max_runtime": None}, True),
        ({"max_runtime": "4 hours"}, False),
        ({"max_runtime": 0}, False),
        ({"max_runtime": True}, False),
        ({"max_cost": 0}, False),  # exclusiveMinimum, not minimum
        ({"max_cost": 0.01}, True),
        ({"max_cost": 10_000_001}, False),
    ],
)
def test_limits_in_the_schema(schema: dict[str, Any], limits: dict[str, Any], valid: bool) -> None:
    ok = jsonschema.Draft202012Validator(schema).is_valid({"name": "x", "limits": limits})
    assert ok is valid


@pytest.mark.parametrize(
    "text",
    ["4h", "1h30m", "90s", "2d", "1d2h3m4s", " 4H ", "90M", "", "h", "4", "4x", "4h 30m", "-4h", "4.5h", "m30", "0h"],
)
def test_the_duration_pattern_is_what_parse_duration_reads(schema: dict[str, Any], text: str) -> None:
    string = next(
        s for s in schema["$defs"]["Limits"]["properties"]["max_runtime"]["anyOf"] if s.get("type") == "string"
    )
    try:
        parse_duration(text)
        parsed = True
    except ValueError:
        parsed = False
    matched = re.search(string["pattern"], text) is not None
    assert matched == parsed or text == "0h", text  # '0h' has the form; its value is refused (not > 0)


@pytest.mark.parametrize(
    ("memory", "valid"), [("64Gi", True), ("16 GB", True), (32, True), ("64GiB", True), ("64Mi", False), (0, False)]
)
def test_memory_in_the_schema(schema: dict[str, Any], memory: Any, valid: bool) -> None:
    assert jsonschema.Draft202012Validator(schema).is_valid({"name": "x", "resources": {"memory": memory}}) is valid


@pytest.mark.parametrize(
    "text", ["100MiB", "1GiB", "50MB", "2g", "512 k", "1.5 GiB", "100", "lots", "", "-5MiB", "1TiB", "MiB"]
)
def test_code_max_size_in_the_schema_is_what_parse_size_reads(schema: dict[str, Any], text: str) -> None:
    from launcher.spec import parse_size

    try:
        parse_size(text)
        parsed = True
    except ValueError:
        parsed = False
    raw = {"name": "x", "code": {"dir": ".", "max_size": text}, "command": ["python", "t.py"]}
    assert jsonschema.Draft202012Validator(schema).is_valid(raw) is parsed, text
