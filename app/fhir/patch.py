"""PATCH bodies: JSON Patch (RFC 6902) and FHIRPath Patch.

Both work on a deep copy of the stored resource and return it; the caller
validates the result like any other write.
"""

from __future__ import annotations

import copy
import re
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhirpathpy import evaluate
from fhirpathpy.models import models

from app.fhir.bindings import model_class_of
from app.fhir.outcomes import FhirError


def _bad(text: str) -> FhirError:
    return FhirError(400, "invalid", text)


def _failed(text: str) -> FhirError:
    return FhirError(422, "processing", text)


# --- JSON Patch ---------------------------------------------------------------

_ARRAY_INDEX = re.compile(r"^(0|[1-9][0-9]*)$")


def _pointer(op: dict[str, Any], member: str) -> list[str]:
    text = op.get(member)
    if not isinstance(text, str) or (text and not text.startswith("/")):
        raise _bad(f"JSON Patch: '{member}' must be a JSON pointer, got {text!r}")
    if not text:
        return []
    return [part.replace("~1", "/").replace("~0", "~") for part in text[1:].split("/")]


def _json_equal(a: Any, b: Any) -> bool:
    # Python says True == 1; JSON does not.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def _index(container: list[Any], token: str, *, adding: bool, where: str) -> int:
    if adding and token == "-":
        return len(container)
    if not _ARRAY_INDEX.match(token):
        raise _failed(f"JSON Patch: '{token}' is not an array index at {where}")
    index = int(token)
    if index > len(container) or (index == len(container) and not adding):
        raise _failed(f"JSON Patch: index {index} is out of range at {where}")
    return index


def _walk_to(doc: Any, tokens: list[str], where: str) -> Any:
    node = doc
    for token in tokens:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, adding=False, where=where)]
        else:
            raise _failed(f"JSON Patch: path {where} does not exist")
    return node


def _remove(doc: Any, tokens: list[str], where: str) -> Any:
    if not tokens:
        raise _failed("JSON Patch: cannot remove the whole resource")
    parent = _walk_to(doc, tokens[:-1], where)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _failed(f"JSON Patch: path {where} does not exist")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, adding=False, where=where))
    raise _failed(f"JSON Patch: path {where} does not exist")


def _add(doc: Any, tokens: list[str], value: Any, where: str) -> Any:
    if not tokens:
        return value
    parent = _walk_to(doc, tokens[:-1], where)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, adding=True, where=where), value)
    else:
        raise _failed(f"JSON Patch: path {where} does not exist")
    return doc


def apply_json_patch(resource: dict[str, Any], operations: Any) -> dict[str, Any]:
    """Apply an RFC 6902 patch document to a copy of resource."""
    if not isinstance(operations, list):
        raise _bad("JSON Patch: the body must be an array of operations")
    doc: Any = copy.deepcopy(resource)
    for number, op in enumerate(operations):
        if not isinstance(op, dict):
            raise _bad(f"JSON Patch: operation {number} is not an object")
        name = op.get("op")
        where = str(op.get("path"))
        tokens = _pointer(op, "path")
        if name in ("add", "replace", "test") and "value" not in op:
            raise _bad(f"JSON Patch: operation {number} ({name}) needs a 'value'")
        if name == "add":
            doc = _add(doc, tokens, copy.deepcopy(op["value"]), where)
        elif name == "remove":
            _remove(doc, tokens, where)
        elif name == "replace":
            _walk_to(doc, tokens, where)
            doc = _replace(doc, tokens, copy.deepcopy(op["value"]), where)
        elif name in ("move", "copy"):
            source = _pointer(op, "from")
            if name == "move" and tokens[: len(source)] == source and tokens != source:
                raise _bad(f"JSON Patch: cannot move {op['from']} into its own child")
            if name == "move":
                value = _remove(doc, source, str(op["from"]))
            else:
                value = copy.deepcopy(_walk_to(doc, source, str(op["from"])))
            doc = _add(doc, tokens, value, where)
        elif name == "test":
            if not _json_equal(_walk_to(doc, tokens, where), op["value"]):
                raise _failed(f"JSON Patch: test failed at {where}")
        else:
            raise _bad(f"JSON Patch: unknown operation {name!r}")
    if not isinstance(doc, dict):
        raise _failed("JSON Patch: the result is not a JSON object")
    result: dict[str, Any] = doc
    return result


def _replace(doc: Any, tokens: list[str], value: Any, where: str) -> Any:
    if not tokens:
        return value
    parent = _walk_to(doc, tokens[:-1], where)
    if isinstance(parent, list):
        parent[_index(parent, tokens[-1], adding=False, where=where)] = value
    else:
        parent[tokens[-1]] = value
    return doc


# --- FHIRPath Patch ---------------------------------------------------------------

_R4_MODEL = models["r4"]
_PROP_STEP = re.compile(r"^([A-Za-z][A-Za-z0-9]*)(?:\[(\d+)\])?$")
_OPERATION_PARTS = {"type", "path", "name", "value", "index", "source", "destination"}


@dataclass(frozen=True, slots=True)
class _Field:
    many: bool
    model: type | None


@cache
def _fields(cls: type) -> dict[str, _Field]:
    out: dict[str, _Field] = {}
    for info in cls.model_fields.values():  # type: ignore[attr-defined]
        alias = info.alias or ""
        if alias and not alias.startswith("_") and alias != "fhir_comments":
            out[alias] = _Field(_is_list(info.annotation), model_class_of(info.annotation))
    return out


def _is_list(annotation: Any) -> bool:
    if typing.get_origin(annotation) is list:
        return True
    return any(_is_list(arg) for arg in typing.get_args(annotation))


def _class_of(node: Any, declared: type | None) -> type | None:
    """The model of a dict, preferring its own resourceType (contained resources)."""
    if isinstance(node, dict) and isinstance(node.get("resourceType"), str):
        try:
            found: type = get_fhir_model_class(node["resourceType"])
            return found
        except (KeyError, ValueError, AttributeError, ImportError):
            return None
    return declared


def _json_key(node: dict[str, Any], cls: type | None, name: str, type_suffix: str = "") -> str:
    """The JSON name of element `name`, resolving choice elements like deceased[x]."""
    if name in node or (cls is not None and name in _fields(cls)):
        return name
    for key in node:
        if key.startswith(name) and key[len(name) : len(name) + 1].isupper():
            return key
    return name + type_suffix


@dataclass(slots=True)
class _Spot:
    """Where an element lives: container[key] or container[key][index]."""

    container: dict[str, Any]
    cls: type | None  # model of the container
    key: str
    index: int | None

    @property
    def value(self) -> Any:
        held = self.container.get(self.key)
        if self.index is None:
            return held
        return held[self.index] if isinstance(held, list) and self.index < len(held) else None

    @property
    def field(self) -> _Field | None:
        return _fields(self.cls).get(self.key) if self.cls is not None else None


def _locate(root: dict[str, Any], node: Any) -> _Spot | dict[str, Any] | None:
    """Find an evaluated node in root: the root itself, a _Spot, or None."""
    data = getattr(node, "data", node)
    if data is root:
        return root
    prop = getattr(node, "propName", None)
    if not isinstance(prop, str) or not prop.startswith(f"{root.get('resourceType')}."):
        return None
    current: dict[str, Any] = root
    cls = _class_of(root, None)
    spot: _Spot | None = None
    for step in prop.split(".")[1:]:
        match = _PROP_STEP.match(step)
        if match is None or not isinstance(current, dict):
            return None
        key = _json_key(current, cls, match.group(1))
        index = int(match.group(2)) if match.group(2) is not None else None
        spot = _Spot(current, cls, key, index)
        held = spot.value
        if isinstance(held, dict):
            field = spot.field
            cls = _class_of(held, field.model if field else None)
            current = held
        elif held is None:
            return None
        else:
            current = {}  # a primitive: only valid as the last step
    if spot is None:
        return None
    held = spot.value
    same = held is data if isinstance(held, dict | list) else held == data
    return spot if same else None


def _find(node: dict[str, Any], cls: type | None, data: dict[str, Any]) -> _Spot | None:
    """Search node for the very dict `data` (nodes that carry no usable path)."""
    for key, held in node.items():
        if key.startswith("_"):
            continue
        items = held if isinstance(held, list) else [held]
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            spot = _Spot(node, cls, key, i if isinstance(held, list) else None)
            if item is data:
                return spot
            field = spot.field
            found = _find(item, _class_of(item, field.model if field else None), data)
            if found is not None:
                return found
    return None


def _select(root: dict[str, Any], path: str) -> list[_Spot | dict[str, Any]]:
    try:
        nodes = evaluate(root, path, {}, _R4_MODEL, {"returnRawData": True})
    except Exception as exc:  # fhirpathpy raises bare Exception on bad expressions
        raise _bad(f"FHIRPath Patch: cannot evaluate path '{path}': {exc}") from exc
    found: list[_Spot | dict[str, Any]] = []
    seen: set[tuple[int, str, int | None]] = set()
    for node in nodes:
        data = getattr(node, "data", node)
        spot = _locate(root, node)
        if spot is None and isinstance(data, dict):
            spot = _find(root, _class_of(root, None), data)
        if spot is None:
            # A primitive's extensions come back as a node of their own: skip it.
            if isinstance(data, dict | type(None)):
                continue
            raise _failed(f"FHIRPath Patch: '{path}' selects something that cannot be patched")
        mark = (
            (0, "", None) if isinstance(spot, dict) else (id(spot.container), spot.key, spot.index)
        )
        if mark not in seen:
            seen.add(mark)
            found.append(spot)
    return found


def _one(root: dict[str, Any], path: str, what: str) -> _Spot | dict[str, Any]:
    spots = _select(root, path)
    if not spots:
        raise _failed(f"FHIRPath Patch: {what}: '{path}' matches nothing")
    if len(spots) > 1:
        raise _failed(f"FHIRPath Patch: {what}: '{path}' matches {len(spots)} elements")
    return spots[0]


def _list_of(root: dict[str, Any], path: str, what: str) -> _Spot:
    """The list a path points into (insert, move)."""
    spots = _select(root, path)
    if not spots:
        raise _failed(f"FHIRPath Patch: {what}: '{path}' matches nothing")
    first = spots[0]
    if isinstance(first, dict) or first.index is None:
        raise _failed(f"FHIRPath Patch: {what}: '{path}' is not a list")
    for spot in spots:
        if isinstance(spot, dict) or spot.container is not first.container:
            raise _failed(f"FHIRPath Patch: {what}: '{path}' spans several lists")
        if spot.key != first.key:
            raise _failed(f"FHIRPath Patch: {what}: '{path}' spans several lists")
    return first


def _shadow(spot: _Spot) -> list[Any] | None:
    """The _name list holding extensions of a primitive list, if any."""
    shadow = spot.container.get(f"_{spot.key}")
    return shadow if isinstance(shadow, list) else None


def _delete(root: dict[str, Any], path: str) -> None:
    spots = _select(root, path)
    if not spots:
        return  # deleting nothing is fine
    if len(spots) > 1:
        raise _failed(f"FHIRPath Patch: delete: '{path}' matches {len(spots)} elements")
    spot = spots[0]
    if isinstance(spot, dict):
        raise _failed("FHIRPath Patch: delete: cannot delete the resource itself")
    if spot.index is None:
        spot.container.pop(spot.key, None)
        spot.container.pop(f"_{spot.key}", None)
        return
    spot.container[spot.key].pop(spot.index)
    shadow = _shadow(spot)
    if shadow is not None and spot.index < len(shadow):
        shadow.pop(spot.index)


def _replace_at(root: dict[str, Any], path: str, value: Any) -> None:
    spot = _one(root, path, "replace")
    if isinstance(spot, dict):
        raise _failed("FHIRPath Patch: replace: cannot replace the resource itself")
    if spot.index is None:
        spot.container[spot.key] = value
        spot.container.pop(f"_{spot.key}", None)
        return
    spot.container[spot.key][spot.index] = value
    shadow = _shadow(spot)
    if shadow is not None and spot.index < len(shadow):
        shadow[spot.index] = None


def _add_child(root: dict[str, Any], path: str, name: str, value: Any, suffix: str) -> None:
    target = _one(root, path, "add")
    if isinstance(target, dict):
        node, cls = target, _class_of(target, None)
    else:
        node = target.value
        field = target.field
        cls = _class_of(node, field.model if field else None)
    if not isinstance(node, dict):
        raise _failed(f"FHIRPath Patch: add: '{path}' is not an element that can hold '{name}'")
    key = _json_key({}, cls, name, suffix)
    fields = _fields(cls) if cls is not None else {}
    if cls is not None and key not in fields:
        raise _failed(f"FHIRPath Patch: add: '{path}' has no element '{name}'")
    many = fields[key].many if key in fields else isinstance(node.get(key), list)
    if many:
        held = node.setdefault(key, [])
        if not isinstance(held, list):
            raise _failed(f"FHIRPath Patch: add: '{path}.{name}' is not a list")
        held.append(value)
        shadow = node.get(f"_{key}")
        if isinstance(shadow, list):
            shadow.append(None)
    elif key in node:
        raise _failed(f"FHIRPath Patch: add: '{path}.{name}' already has a value; use replace")
    else:
        node[key] = value


def _insert(root: dict[str, Any], path: str, value: Any, index: int) -> None:
    spot = _list_of(root, path, "insert")
    items = spot.container[spot.key]
    if index > len(items):
        raise _failed(f"FHIRPath Patch: insert: index {index} is past the end of '{path}'")
    items.insert(index, value)
    shadow = _shadow(spot)
    if shadow is not None:
        shadow.insert(index, None)


def _move(root: dict[str, Any], path: str, source: int, destination: int) -> None:
    spot = _list_of(root, path, "move")
    items = spot.container[spot.key]
    if source >= len(items) or destination >= len(items):
        raise _failed(f"FHIRPath Patch: move: index out of range for '{path}'")
    items.insert(destination, items.pop(source))
    shadow = _shadow(spot)
    if shadow is not None and len(shadow) == len(items):
        shadow.insert(destination, shadow.pop(source))


def _value_of(part: dict[str, Any], cls: type | None) -> tuple[Any, str]:
    """A part's value and its type suffix ("Boolean" for valueBoolean), from value[x] or parts."""
    keys = [k for k in part if k.startswith("value") and len(k) > len("value")]
    if len(keys) == 1 and "part" not in part:
        return copy.deepcopy(part[keys[0]]), keys[0][len("value") :]
    if keys or not isinstance(part.get("part"), list):
        raise _bad(f"FHIRPath Patch: part '{part.get('name')}' needs one value[x] or parts")
    built: dict[str, Any] = {}
    fields = _fields(cls) if cls is not None else {}
    for sub in part["part"]:
        if not isinstance(sub, dict) or not isinstance(sub.get("name"), str):
            raise _bad("FHIRPath Patch: every part of a complex value needs a name")
        name = sub["name"]
        field = fields.get(name)
        value, suffix = _value_of(sub, field.model if field else None)
        key = name if field or cls is None else _json_key({}, cls, name, suffix)
        field = fields.get(key, field)
        if cls is not None and field is None:
            raise _bad(f"FHIRPath Patch: '{name}' is not an element of {cls.__name__}")
        # Without a model, a repeated name is the only sign of a list.
        many = field.many if field is not None else key in built
        if many:
            held = built.setdefault(key, [])
            if not isinstance(held, list):
                built[key] = held = [held]
            held.append(value)
        elif key in built:
            raise _bad(f"FHIRPath Patch: '{name}' given twice for a single element")
        else:
            built[key] = value
    return built, ""


def _parts(operation: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(operation, dict) or operation.get("name") != "operation":
        raise _bad("FHIRPath Patch: every parameter must be named 'operation'")
    parts = operation.get("part")
    if not isinstance(parts, list):
        raise _bad("FHIRPath Patch: an operation needs parts")
    named: dict[str, dict[str, Any]] = {}
    for part in parts:
        name = part.get("name") if isinstance(part, dict) else None
        if name not in _OPERATION_PARTS or name in named:
            raise _bad(f"FHIRPath Patch: unexpected or repeated operation part {name!r}")
        named[name] = part
    return named


def _primitive(parts: dict[str, dict[str, Any]], name: str, key: str, kind: type) -> Any:
    part = parts.get(name)
    if part is None or not isinstance(part.get(key), kind) or isinstance(part.get(key), bool):
        raise _bad(f"FHIRPath Patch: the operation needs part '{name}' with {key}")
    if kind is int and part[key] < 0:
        raise _bad(f"FHIRPath Patch: part '{name}' must not be negative")
    return part[key]


def _value_for(
    root: dict[str, Any], parts: dict[str, dict[str, Any]], path: str, name: str | None
) -> tuple[Any, str]:
    value = parts.get("value")
    if value is None:
        raise _bad("FHIRPath Patch: the operation needs a 'value' part")
    # Only a part-wise value needs the model of its target.
    target = _target_model(root, path, name) if "part" in value else None
    return _value_of(value, target)


def _target_model(root: dict[str, Any], path: str, name: str | None) -> type | None:
    """Best effort: the model a new value should follow, for part-wise values."""
    spots = _select(root, path)
    if len(spots) != 1:
        return None
    spot = spots[0]
    if name is None:
        if isinstance(spot, dict):
            return None
        field = spot.field
        return field.model if field else None
    holder = spot if isinstance(spot, dict) else spot.value
    if isinstance(spot, dict):
        cls = _class_of(spot, None)
    else:
        field = spot.field
        cls = _class_of(holder, field.model if field else None)
    if cls is None:
        return None
    found = _fields(cls).get(name)
    return found.model if found else None


def apply_fhirpath_patch(resource: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """Apply a FHIRPath Patch Parameters resource to a copy of resource."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise _bad("FHIRPath Patch: the body must be a Parameters resource")
    operations = parameters.get("parameter", [])
    if not isinstance(operations, list):
        raise _bad("FHIRPath Patch: Parameters.parameter must be a list")
    root = copy.deepcopy(resource)
    for operation in operations:
        parts = _parts(operation)
        kind = _primitive(parts, "type", "valueCode", str)
        path = _primitive(parts, "path", "valueString", str)
        if kind == "delete":
            _delete(root, path)
        elif kind == "replace":
            value, _ = _value_for(root, parts, path, None)
            _replace_at(root, path, value)
        elif kind == "add":
            name = _primitive(parts, "name", "valueString", str)
            value, suffix = _value_for(root, parts, path, name)
            _add_child(root, path, name, value, suffix)
        elif kind == "insert":
            index = _primitive(parts, "index", "valueInteger", int)
            value, _ = _value_for(root, parts, path, None)
            _insert(root, path, value, index)
        elif kind == "move":
            source = _primitive(parts, "source", "valueInteger", int)
            destination = _primitive(parts, "destination", "valueInteger", int)
            _move(root, path, source, destination)
        else:
            raise _bad(f"FHIRPath Patch: unknown operation type {kind!r}")
    _drop_empty(root)
    return root


def _drop_empty(node: Any) -> None:
    """FHIR JSON has no empty objects or arrays: remove what deletes left behind."""
    if isinstance(node, dict):
        for key in list(node):
            _drop_empty(node[key])
            if node[key] in ({}, [], None) or (
                key.startswith("_") and isinstance(node[key], list) and not any(node[key])
            ):
                del node[key]
    elif isinstance(node, list):
        for item in node:
            _drop_empty(item)
