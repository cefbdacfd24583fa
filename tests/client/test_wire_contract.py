"""The client's wire model (client/wire.py's TypedDicts) against the service's OpenAPI document.

``create_app(settings).openapi()`` is built for real. Each top-level client type is paired with
the request or response body of its route; a field that is a TypedDict is then paired with the
schema its OpenAPI field refers to, recursively. For every pair the field names, whether each is
required (``NotRequired`` on the client) and the basic JSON types (null, boolean, integer,
number, string, array, object; with array items and referenced schemas followed) must agree.
Every TypedDict of client/wire.py must be reached, so a new wire type cannot go unchecked.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NotRequired, Required, Union, get_args, get_origin, get_type_hints, is_typeddict

import pytest

from hposteer.client import wire
from hposteer.service.app import create_app
from hposteer.service.config import Settings

Schema = dict[str, Any]
JsonTypes = frozenset[str] | None  # None: any JSON value (``Any`` / the empty schema)

# (client type, method, path, "request" | "response")
ROUTES: list[tuple[type, str, str, str]] = [
    (wire.Health, "get", "/healthz", "response"),
    (wire.StoredSandbox, "post", "/api/v1/sandboxes", "response"),
    (wire.TaskDetail, "post", "/api/v1/tasks", "response"),
    (wire.TaskList, "get", "/api/v1/tasks", "response"),
    (wire.TaskDetail, "get", "/api/v1/tasks/{task_id}", "response"),
    (wire.PointList, "get", "/api/v1/tasks/{task_id}/points", "response"),
    (wire.PointDetail, "get", "/api/v1/tasks/{task_id}/points/{point_id}", "response"),
    (wire.ReportList, "get", "/api/v1/tasks/{task_id}/points/{point_id}/reports", "response"),
    (wire.Retried, "post", "/api/v1/tasks/{task_id}/retry", "response"),
    (wire.TaskDetail, "post", "/api/v1/tasks/{task_id}/kill", "response"),
    (wire.PilotRegistration, "post", "/api/v1/pilot/register", "request"),
    (wire.Registration, "post", "/api/v1/pilot/register", "response"),
    (wire.AcquireRequest, "post", "/api/v1/pilot/acquire", "request"),
    (wire.Acquired, "post", "/api/v1/pilot/acquire", "response"),
    (wire.HeartbeatRequest, "post", "/api/v1/pilot/attempts/{attempt_id}/heartbeat", "request"),
    (wire.Heartbeat, "post", "/api/v1/pilot/attempts/{attempt_id}/heartbeat", "response"),
    (wire.CompletionReport, "post", "/api/v1/pilot/attempts/{attempt_id}/complete", "request"),
    (wire.Completed, "post", "/api/v1/pilot/attempts/{attempt_id}/complete", "response"),
]

_PRIMITIVES: dict[Any, str] = {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string"}


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> Schema:
    data_dir: Path = tmp_path_factory.mktemp("openapi")
    return create_app(Settings.model_validate({"data_dir": data_dir})).openapi()


def wire_types() -> set[type]:
    return {v for v in vars(wire).values() if is_typeddict(v) and v.__module__ == wire.__name__}


# -- the client's side ----------------------------------------------------------------------------


def client_fields(td: type) -> dict[str, tuple[Any, bool]]:
    """name -> (annotation, required). From the evaluated hints: with ``from __future__ import
    annotations`` Python 3.11's ``__required_keys__`` counts every key as required."""
    total = getattr(td, "__total__", True)
    fields = {}
    for name, annotation in get_type_hints(td, include_extras=True).items():
        hint, required = annotation, total
        if get_origin(annotation) in (NotRequired, Required):
            required = get_origin(annotation) is Required
            (hint,) = get_args(annotation)
        fields[name] = (hint, required)
    return fields


def _members(hint: Any) -> list[Any]:
    return list(get_args(hint)) if get_origin(hint) in (Union, types.UnionType) else [hint]


def client_json_types(hint: Any) -> JsonTypes:
    found: set[str] = set()
    for member in _members(hint):
        origin = get_origin(member)
        if member is Any:
            return None
        if member in _PRIMITIVES:
            found.add(_PRIMITIVES[member])
        elif origin is Literal:
            found.update(_PRIMITIVES[type(v)] for v in get_args(member))
        elif member in (list, tuple) or origin in (list, tuple, Sequence):
            found.add("array")
        elif member is dict or origin in (dict, Mapping) or is_typeddict(member):
            found.add("object")
        else:
            raise AssertionError(f"the test does not know the JSON type of {member!r}")
    return frozenset(found)


def _client_item(hint: Any) -> Any:
    """What a list annotation (or optional list) holds, else None."""
    for member in _members(hint):
        if get_origin(member) in (list, Sequence):
            return get_args(member)[0]
    return None


def _client_typeddict(hint: Any) -> type | None:
    return next((m for m in _members(hint) if is_typeddict(m)), None)


# -- the service's side ---------------------------------------------------------------------------


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _alternatives(schema: Schema) -> list[Schema]:
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return [alt for option in schema[key] for alt in _alternatives(option)]
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _alternatives(schema["allOf"][0])
    return [schema]


def schema_json_types(schema: Schema) -> JsonTypes:
    found: set[str] = set()
    for alt in _alternatives(schema):
        if "$ref" in alt:
            found.add("object")
        elif "type" in alt:
            found.update([alt["type"]] if isinstance(alt["type"], str) else alt["type"])
        elif "const" in alt or "enum" in alt:
            values = [alt["const"]] if "const" in alt else alt["enum"]
            found.update(_PRIMITIVES[type(v)] for v in values)
        else:
            return None  # {}: any value
    return frozenset(found)


def _schema_ref(schema: Schema) -> str | None:
    return next((_ref_name(alt["$ref"]) for alt in _alternatives(schema) if "$ref" in alt), None)


def _schema_item(schema: Schema) -> Schema | None:
    return next((alt["items"] for alt in _alternatives(schema) if alt.get("type") == "array" and "items" in alt), None)


def route_schema(openapi: Schema, method: str, path: str, side: str) -> str:
    operation = openapi["paths"][path][method]
    if side == "request":
        content = operation["requestBody"]["content"]
    else:
        content = next(r["content"] for status, r in sorted(operation["responses"].items()) if status.startswith("2"))
    ref = _schema_ref(content["application/json"]["schema"])
    assert ref is not None, f"{method.upper()} {path}: the {side} body is not a named schema"
    return ref


# -- the comparison -------------------------------------------------------------------------------


class Contract:
    def __init__(self, openapi: Schema):
        self.components: dict[str, Schema] = openapi["components"]["schemas"]
        self.paired: dict[type, str] = {}
        self.problems: list[str] = []

    def pair(self, td: type, schema_name: str) -> None:
        known = self.paired.get(td)
        if known is not None:
            if known != schema_name:
                self.problems.append(f"{td.__name__}: paired with both {known} and {schema_name}")
            return
        self.paired[td] = schema_name
        schema = self.components[schema_name]
        properties: dict[str, Schema] = schema.get("properties", {})
        required_there = set(schema.get("required", []))
        fields = client_fields(td)
        what = f"{td.__name__} (OpenAPI {schema_name})"
        for name in sorted(set(properties) - set(fields)):
            self.problems.append(f"{what}.{name}: in the OpenAPI schema, missing from the client type")
        for name, (hint, required) in fields.items():
            if name not in properties:
                self.problems.append(f"{what}.{name}: in the client type, not in the OpenAPI schema")
                continue
            if required != (name in required_there):
                said = "required" if required else "NotRequired"
                there = "required" if name in required_there else "optional"
                self.problems.append(f"{what}.{name}: the client says {said}, the OpenAPI schema {there}")
            self.compare(f"{what}.{name}", hint, properties[name])

    def compare(self, where: str, hint: Any, schema: Schema) -> None:
        ours, theirs = client_json_types(hint), schema_json_types(schema)
        if ours != theirs:
            shown = [sorted(t) if t is not None else "any" for t in (ours, theirs)]
            self.problems.append(f"{where}: JSON type {shown[0]} on the client, {shown[1]} in the OpenAPI schema")
            return
        nested, ref = _client_typeddict(hint), _schema_ref(schema)
        if nested is not None or ref is not None:
            if nested is None or ref is None:
                self.problems.append(f"{where}: a typed object on one side only (client {hint!r}, schema {ref})")
            else:
                self.pair(nested, ref)
        item, item_schema = _client_item(hint), _schema_item(schema)
        if item is not None and item_schema is not None:
            self.compare(f"{where}[]", item, item_schema)


def test_every_client_type_matches_its_openapi_schema(openapi: Schema) -> None:
    contract = Contract(openapi)
    for td, method, path, side in ROUTES:
        contract.pair(td, route_schema(openapi, method, path, side))
    unchecked = sorted(t.__name__ for t in wire_types() - set(contract.paired))
    assert not unchecked, f"client/wire.py types no route reaches (add them to ROUTES): {unchecked}"
    assert not contract.problems, "client/wire.py and the OpenAPI document disagree:\n" + "\n".join(contract.problems)


def test_the_contract_sees_a_field_added_on_one_side() -> None:
    """The comparison itself: an extra client field, a missing one, required-ness and types."""
    components = {
        "ThingOut": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
            "required": ["a", "b"],
        }
    }

    class Thing(typing.TypedDict):
        a: int
        b: str | None

    class Extra(Thing):
        c: int

    class Loose(typing.TypedDict):
        a: NotRequired[float]

    def problems(td: type) -> list[str]:
        contract = Contract({"components": {"schemas": components}})
        contract.pair(td, "ThingOut")
        return contract.problems

    assert problems(Thing) == []
    assert problems(Extra) == ["Extra (OpenAPI ThingOut).c: in the client type, not in the OpenAPI schema"]
    assert problems(Loose) == [
        "Loose (OpenAPI ThingOut).b: in the OpenAPI schema, missing from the client type",
        "Loose (OpenAPI ThingOut).a: the client says NotRequired, the OpenAPI schema required",
        "Loose (OpenAPI ThingOut).a: JSON type ['number'] on the client, ['integer'] in the OpenAPI schema",
    ]
