"""Search index values of a resource, computed once on write.

Every search parameter expression is compiled once per resource type. Plain
paths (`Task.status`, `(Observation.value as Quantity)`, `Goal.subject`,
`Patient.telecom.where(system='email')`, `X.where(resolve() is Patient)`) are
walked directly on the JSON with the element types of the FHIRPath model;
anything else goes through fhirpathpy, which costs tens of microseconds per
expression.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from itertools import product
from typing import Any, NamedTuple

import fhirpathpy
from fhirpathpy.models import models as fhirpath_models

from app.fhir.search.registry import SearchParam, declared_params, split_union

log = logging.getLogger(__name__)

# Indexed strings are cut to this many characters (btree entries stay small).
MAX_INDEXED = 255
MAX_URI = 2048
MIN_DATE = datetime(1, 1, 1, tzinfo=UTC)
MAX_DATE = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


class TokenRow(NamedTuple):
    param: str
    system: str | None
    code: str | None
    text: str | None = None  # normalised display / text, for :text
    type_system: str | None = None  # Identifier.type coding, for :of-type
    type_code: str | None = None


class StringRow(NamedTuple):
    param: str
    value_norm: str
    value_exact: str


class ReferenceRow(NamedTuple):
    param: str
    target_type: str | None
    target_id: str | None
    target_version: str | None
    url: str | None  # absolute, external, canonical (without |version)


class DateRow(NamedTuple):
    param: str
    low: datetime
    high: datetime


class NumberRow(NamedTuple):
    param: str
    value: Decimal
    low: Decimal
    high: Decimal


class QuantityRow(NamedTuple):
    param: str
    value: Decimal | None  # None for a Range
    low: Decimal | None
    high: Decimal | None
    system: str | None
    code: str | None
    unit: str | None


class UriRow(NamedTuple):
    param: str
    uri: str


class CompositeRow(NamedTuple):
    param: str
    # One JSON object per component, shaped by the component's type:
    # token {system, code}; quantity/number {value, low, high[, system, code, unit]};
    # date {low, high} (ISO UTC strings); string {value}; reference {type, id, url};
    # uri {uri}.
    components: tuple[dict[str, Any], ...]


@dataclass(slots=True)
class IndexRows:
    token: list[TokenRow] = field(default_factory=list)
    string: list[StringRow] = field(default_factory=list)
    reference: list[ReferenceRow] = field(default_factory=list)
    date: list[DateRow] = field(default_factory=list)
    number: list[NumberRow] = field(default_factory=list)
    quantity: list[QuantityRow] = field(default_factory=list)
    uri: list[UriRow] = field(default_factory=list)
    composite: list[CompositeRow] = field(default_factory=list)


# --- normalisation shared with the search side -------------------------------

_LIGATURES = str.maketrans({"œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae", "ß": "ss"})


@lru_cache(maxsize=8192)
def normalize(text: str) -> str:
    """Accent-stripped, casefolded, whitespace-collapsed form used for string search."""
    if text.isascii():
        return " ".join(text.lower().split())
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


_DATE_RE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})"
    r"(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def _tz(text: str | None) -> timezone:
    if not text or text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(text[1:3]), minutes=int(text[4:6])))


def date_range(text: str) -> tuple[datetime, datetime] | None:
    """The closed UTC range a FHIR date, dateTime or instant covers, at its precision.

    A value without a timezone is taken as UTC.
    """
    match = _DATE_RE.match(text.strip())
    if match is None:
        return None
    year_s, month_s, day_s, hour_s, minute_s, second_s, frac, tz_s = match.groups()
    year = int(year_s)
    try:
        if month_s is None:
            low = datetime(year, 1, 1, tzinfo=UTC)
            end = datetime(year + 1, 1, 1, tzinfo=UTC) if year < 9999 else None
        elif day_s is None:
            month = int(month_s)
            low = datetime(year, month, 1, tzinfo=UTC)
            if month < 12:
                end = datetime(year, month + 1, 1, tzinfo=UTC)
            else:
                end = datetime(year + 1, 1, 1, tzinfo=UTC) if year < 9999 else None
        elif hour_s is None:
            low = datetime(year, int(month_s), int(day_s), tzinfo=UTC)
            end = low + timedelta(days=1)
        else:
            micro = int(frac[:6].ljust(6, "0")) if frac else 0
            local = datetime(
                year,
                int(month_s),
                int(day_s),
                int(hour_s),
                int(minute_s),
                int(second_s or 0),
                micro,
                tzinfo=_tz(tz_s),
            )
            low = local.astimezone(UTC)
            if second_s is None:
                step = timedelta(minutes=1)
            elif frac:
                step = timedelta(microseconds=10 ** max(0, 6 - len(frac)))
            else:
                step = timedelta(seconds=1)
            end = low + step
    except (ValueError, OverflowError):
        return None
    high = end - timedelta(microseconds=1) if end is not None else MAX_DATE
    return low, max(low, high)


def to_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int | float | str):
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


def number_range(value: Decimal) -> tuple[Decimal, Decimal]:
    """Implicit precision range: 1.5 covers [1.45, 1.55), 100 covers [99.5, 100.5)."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5).scaleb(exponent - 1)
    return value - half, value + half


_TYPE_RE = r"[A-Z][A-Za-z]+"
_ID_RE = r"[A-Za-z0-9\-\.]{1,64}"
_RELATIVE_RE = re.compile(rf"^({_TYPE_RE})/({_ID_RE})(?:/_history/({_ID_RE}))?$")


def parse_reference(
    reference: str, base_url: str | None = None
) -> tuple[str | None, str | None, str | None, str | None] | None:
    """(type, id, version, url) of a Reference.reference; None for contained `#id`.

    Absolute URLs keep their url; those under `base_url` also get type and id.
    """
    if not reference or reference.startswith("#"):
        return None
    match = _RELATIVE_RE.match(reference)
    if match:
        return match.group(1), match.group(2), match.group(3), None
    if base_url and reference.startswith(base_url + "/"):
        match = _RELATIVE_RE.match(reference[len(base_url) + 1 :])
        if match:
            return match.group(1), match.group(2), match.group(3), reference
    return None, None, None, reference


# --- element types from the FHIRPath model ------------------------------------

_PRIMITIVE_NAMES = (
    "boolean integer integer64 string decimal uri url canonical base64Binary instant "
    "date dateTime time code oid id markdown unsignedInt positiveInt uuid xhtml"
)
_PRIMITIVES = {name.lower(): name for name in _PRIMITIVE_NAMES.split()}
_SYSTEM_TYPES = {"String": "string", "Boolean": "boolean", "Integer": "integer"}
# Types that R4 (the model fhirpathpy ships) lacks and R5 describes closely enough.
_FROM_R5 = ("SubscriptionTopic",)


def _type_name(name: str) -> str:
    if name.startswith("System."):
        return _SYSTEM_TYPES.get(name[7:], "string")
    return _PRIMITIVES.get(name.lower(), name)


@cache
def fhirpath_model() -> dict[str, Any]:
    model = {table: dict(entries) for table, entries in fhirpath_models["r4"].items()}
    r5 = fhirpath_models["r5"]
    for table in ("path2Type", "choiceTypePaths", "pathsDefinedElsewhere"):
        for path, value in r5[table].items():
            if path.split(".", 1)[0] in _FROM_R5:
                model[table].setdefault(path, value)
    for name in _FROM_R5:
        model["type2Parent"].setdefault(name, "DomainResource")
    return model


@cache
def _backbone_paths() -> frozenset[str]:
    model = fhirpath_model()
    paths: set[str] = set()
    for path in model["path2Type"]:
        parts = path.split(".")
        paths.update(".".join(parts[:i]) for i in range(2, len(parts)))
    return frozenset(paths - model["path2Type"].keys())


def _children(type_path: str, name: str) -> list[tuple[str, str, str]]:
    """(json key, FHIR type, type path of its children) for element `name` of `type_path`."""
    model = fhirpath_model()
    full = f"{type_path}.{name}"
    full = model["pathsDefinedElsewhere"].get(full, full)
    choices = model["choiceTypePaths"].get(full)
    if choices:
        return [(name + choice, _type_name(choice), _type_name(choice)) for choice in choices]
    declared = model["path2Type"].get(full)
    if declared is not None:
        type_name = _type_name(declared)
        return [
            (name, type_name, full if type_name in ("BackboneElement", "Element") else type_name)
        ]
    if full in _backbone_paths():
        return [(name, "BackboneElement", full)]
    raise LookupError(full)


# --- direct path evaluation ---------------------------------------------------

# A value of the result and its FHIR type (None when unknown).
Node = tuple[Any, str | None]
Getter = Callable[[Any], list[Node]]
Predicate = Callable[[Any], bool]


def _split_top(text: str, separator: str) -> list[str]:
    """Split on `separator` outside parentheses and quotes."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    while i < len(text):
        char = text[i]
        if char == "'":
            quoted = not quoted
        elif not quoted:
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
            elif depth == 0 and text.startswith(separator, i):
                parts.append(text[start:i])
                i += len(separator)
                start = i
                continue
        i += 1
    parts.append(text[start:])
    return [part.strip() for part in parts]


def _closing(text: str) -> int:
    """Index of the parenthesis closing the one `text` starts with, or -1."""
    depth = 0
    quoted = False
    for i, char in enumerate(text):
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _strip_parens(text: str) -> str:
    while text.startswith("(") and _closing(text) == len(text) - 1:
        text = text[1:-1].strip()
    return text


_AS_WRAPPED = re.compile(r"^\((.+) as (\w+)\)(.*)$")
_AS_BARE = re.compile(r"^(.+) as (\w+)$")
_AS_CALL = re.compile(r"\.(?:as|ofType)\((\w+)\)")
_RESOLVE_IS = re.compile(r"\.where\(resolve\(\) is (\w+)\)$")
_NAME = re.compile(r"^[A-Za-z_]\w*$")
_CALL = re.compile(r"^(\w+)\((.*)\)$", re.DOTALL)
_EQUALS = re.compile(r"^([\w.]+)\s*=\s*'([^']*)'$")
_EXISTS = re.compile(r"^([\w.]+)\.where\((.*)\)\.exists\(\)$", re.DOTALL)


def normalise_branch(branch: str) -> tuple[str, str | None]:
    """Rewrite casts as `.ofType(T)` and take off a final `.where(resolve() is T)`."""
    text = _strip_parens(branch.strip())
    ref_type = None
    match = _RESOLVE_IS.search(text)
    if match:
        ref_type = match.group(1)
        text = text[: match.start()]
    while match := _AS_WRAPPED.match(text):
        text = f"{match.group(1)}.ofType({match.group(2)}){match.group(3)}"
    if match := _AS_BARE.match(text):
        text = f"{match.group(1)}.ofType({match.group(2)})"
    return _AS_CALL.sub(r".ofType(\1)", text), ref_type


def _descend(items: Iterable[Any], key: str) -> list[Any]:
    found: list[Any] = []
    for item in items:
        if isinstance(item, dict):
            value = item.get(key)
            if isinstance(value, list):
                found.extend(v for v in value if v is not None)
            elif value is not None:
                found.append(value)
    return found


def _compile_predicate(text: str) -> Predicate | None:
    """`a.b='x' and c.where(...).exists()` on one item; None when not that simple."""
    terms: list[Predicate] = []
    for term in _split_top(text, " and "):
        match = _EQUALS.match(term)
        if match:
            keys, literal = match.group(1).split("."), match.group(2)
            terms.append(_equals_term(keys, literal))
            continue
        match = _EXISTS.match(term)
        inner = _compile_predicate(match.group(2)) if match else None
        if match is None or inner is None:
            return None
        terms.append(_exists_term(match.group(1).split("."), inner))
    return lambda item: all(term(item) for term in terms)


def _equals_term(keys: list[str], literal: str) -> Predicate:
    def test(item: Any) -> bool:
        values = [item]
        for key in keys:
            values = _descend(values, key)
        return literal in values

    return test


def _exists_term(keys: list[str], inner: Predicate) -> Predicate:
    def test(item: Any) -> bool:
        values = [item]
        for key in keys:
            values = _descend(values, key)
        return any(inner(value) for value in values)

    return test


class _Plan(NamedTuple):
    steps: tuple[str | Predicate, ...]  # a key to descend into, or a filter
    fhir_type: str
    type_path: str


def compile_path(expression: str, type_path: str, root: str | None) -> list[_Plan] | None:
    """Plans for a plain path from `type_path`; None when the expression is not plain.

    `root` is the first name the expression must start with (the resource type,
    or Resource / DomainResource); None for a relative expression.
    """
    segments = _split_top(expression, ".")
    if root is not None:
        if not segments or segments[0] not in (root, "Resource", "DomainResource"):
            return None
        segments = segments[1:]
    plans = [_Plan((), type_path, type_path)]
    for segment in segments:
        call = _CALL.match(segment)
        if _NAME.match(segment):
            try:
                plans = [
                    _Plan((*plan.steps, key), fhir_type, child_path)
                    for plan in plans
                    for key, fhir_type, child_path in _children(plan.type_path, segment)
                ]
            except LookupError:
                return None
        elif call and call.group(1) == "ofType":
            wanted = _type_name(call.group(2))
            plans = [plan for plan in plans if plan.fhir_type == wanted]
        elif call and call.group(1) == "where":
            predicate = _compile_predicate(call.group(2))
            if predicate is None:
                return None
            plans = [plan._replace(steps=(*plan.steps, predicate)) for plan in plans]
        elif call and call.group(1) == "extension" and call.group(2).startswith("'"):
            url = call.group(2).strip("'")
            plans = [
                _Plan(
                    (*plan.steps, "extension", _equals_term(["url"], url)), "Extension", "Extension"
                )
                for plan in plans
            ]
        else:
            return None
    return plans


def run_plans(plans: list[_Plan], data: Any) -> list[Node]:
    nodes: list[Node] = []
    # Choice expansion makes plans that differ only in their last key: walk the rest once.
    parents: dict[tuple[str | Predicate, ...], list[Any]] = {}
    for plan in plans:
        head = plan.steps[:-1]
        items = parents.get(head)
        if items is None:
            items = [data]
            for step in head:
                items = (
                    _descend(items, step) if isinstance(step, str) else list(filter(step, items))
                )
                if not items:
                    break
            parents[head] = items
        if items and plan.steps:
            last = plan.steps[-1]
            items = _descend(items, last) if isinstance(last, str) else list(filter(last, items))
        nodes.extend((item, plan.fhir_type) for item in items)
    return nodes


def _plans_getter(plans: list[_Plan]) -> Getter:
    if len(plans) == 1 and all(isinstance(step, str) for step in plans[0].steps):
        keys = [step for step in plans[0].steps if isinstance(step, str)]
        fhir_type = plans[0].fhir_type

        def walk(data: Any) -> list[Node]:  # the common case: a plain dotted path
            items = [data]
            for key in keys:
                items = _descend(items, key)
                if not items:
                    return []
            return [(item, fhir_type) for item in items]

        return walk
    return lambda data: run_plans(plans, data)


def _fhirpath_type(node: Any) -> str | None:
    path = getattr(node, "path", None)
    if not isinstance(path, str):
        return None
    if "." not in path:
        return _type_name(path)
    declared = fhirpath_model()["path2Type"].get(path)
    return _type_name(declared) if declared else None


def _fhirpath_getter(expression: str) -> Getter:
    evaluate = fhirpathpy.compile(
        expression, model=fhirpath_model(), options={"returnRawData": True}
    )

    def get(data: Any) -> list[Node]:
        nodes: list[Node] = []
        for node in evaluate(data, {}):
            value = node.data if hasattr(node, "data") else node
            fhir_type = _fhirpath_type(node)
            if fhir_type is None or fhir_type in ("BackboneElement", "Element"):
                fhir_type = _guess_type(value)
            nodes.append((value, fhir_type))
        return nodes

    return get


def _reference_filter(getter: Getter, ref_type: str) -> Getter:
    """`resolve() is T`: keep references whose target type is T."""
    pattern = re.compile(rf"(^|/){ref_type}/[^/]+(/_history/[^/]+)?$")

    def get(data: Any) -> list[Node]:
        return [
            (value, fhir_type)
            for value, fhir_type in getter(data)
            if isinstance(value, dict)
            and isinstance(value.get("reference"), str)
            and pattern.search(value["reference"])
        ]

    return get


_QUANTITIES = {"Quantity", "Age", "Duration", "Distance", "Count", "SimpleQuantity"}
# The element types each parameter type can index; others (scheduledString for a
# date, SampledData for a quantity) are dropped when the plans are made.
ACCEPTED_TYPES: dict[str, frozenset[str]] = {
    "token": frozenset(
        {"CodeableConcept", "Coding", "Identifier", "ContactPoint", "boolean", "code", "string"}
        | {"id", "uri", "url", "canonical", "oid", "uuid", "integer", "positiveInt"}
    ),
    "string": frozenset({"string", "markdown", "HumanName", "Address"}),
    "reference": frozenset({"Reference", "canonical", "uri", "url"}),
    "date": frozenset({"date", "dateTime", "instant", "Period", "Timing"}),
    "number": frozenset({"decimal", "integer", "integer64", "positiveInt", "unsignedInt"}),
    "quantity": frozenset(_QUANTITIES | {"Money", "MoneyQuantity", "Range"}),
    "uri": frozenset({"uri", "url", "canonical", "oid", "uuid"}),
}


def _accepted(plans: list[_Plan], param_type: str) -> list[_Plan]:
    accepted = ACCEPTED_TYPES.get(param_type)
    return [p for p in plans if accepted is None or p.fhir_type in accepted]


_PRESENT_NOT_FALSE = re.compile(r"^(\S+)\.exists\(\) and (\S+) != false$")


def _present_not_false(plans: list[_Plan]) -> Getter:
    """`X.exists() and X != false` (Patient deceased): one boolean."""

    def get(data: Any) -> list[Node]:
        values = [value for value, _ in run_plans(plans, data)]
        return [(bool(values) and all(v is not False for v in values), "boolean")]

    return get


def compile_branch(branch: str, resource_type: str, param_type: str) -> Getter:
    """A getter for one branch of a parameter expression; raises when fhirpathpy cannot."""
    text, ref_type = normalise_branch(branch)
    match = _PRESENT_NOT_FALSE.match(text)
    if match and match.group(1) == match.group(2):
        found = compile_path(match.group(1), resource_type, resource_type)
        if found is not None:
            return _present_not_false(found)
    plans = compile_path(text, resource_type, resource_type)
    if plans is not None:
        getter = _plans_getter(_accepted(plans, param_type))
    else:
        getter = _fhirpath_getter(text)
        getter({"resourceType": resource_type})  # fail now, not on a write
    return _reference_filter(getter, ref_type) if ref_type else getter


# --- values to rows -------------------------------------------------------------

_CONTACT_SYSTEMS = {"phone", "fax", "email", "pager", "url", "sms", "other"}


def _guess_type(value: Any) -> str | None:
    """FHIR type of a fhirpathpy result whose type the model did not give."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "decimal"
    if isinstance(value, str):
        return "string"
    if not isinstance(value, dict):
        return None
    if "coding" in value:
        return "CodeableConcept"
    if "reference" in value or isinstance(value.get("identifier"), dict):
        return "Reference"
    if "start" in value or "end" in value:
        return "Period"
    if "currency" in value:
        return "Money"
    if "low" in value or "high" in value:
        return "Range"
    if "family" in value or "given" in value:
        return "HumanName"
    if "city" in value or "line" in value or "postalCode" in value:
        return "Address"
    if "value" in value and value.get("system") in _CONTACT_SYSTEMS:
        return "ContactPoint"
    if "value" in value and ("unit" in value or "comparator" in value):
        return "Quantity"
    if "value" in value:
        return "Identifier"
    if "code" in value or "system" in value:
        return "Coding"
    return None


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _clip(value: Any) -> str | None:
    return value[:MAX_INDEXED] if isinstance(value, str) and value else None


def _text(value: Any) -> str | None:
    return _clip(normalize(value)) if isinstance(value, str) and value.strip() else None


def _identifier_rows(code: str, ident: dict[str, Any], rows: IndexRows) -> None:
    system, value = _clip(ident.get("system")), _clip(ident.get("value"))
    if system is None and value is None:
        return
    id_type = ident.get("type")
    codings = _items(id_type.get("coding")) if isinstance(id_type, dict) else []
    typed = [c for c in codings if isinstance(c, dict) and c.get("code")]
    if not typed:
        rows.token.append(TokenRow(code, system, value))
    for coding in typed:
        rows.token.append(
            TokenRow(code, system, value, None, _clip(coding.get("system")), _clip(coding["code"]))
        )


def add_token(
    code: str, value: Any, fhir_type: str | None, base: str | None, rows: IndexRows
) -> None:
    if fhir_type == "CodeableConcept" and isinstance(value, dict):
        for coding in _items(value.get("coding")):
            add_token(code, coding, "Coding", base, rows)
        if text := _text(value.get("text")):
            rows.token.append(TokenRow(code, None, None, text))
    elif fhir_type == "Coding" and isinstance(value, dict):
        system, value_code = _clip(value.get("system")), _clip(value.get("code"))
        if system or value_code:
            rows.token.append(TokenRow(code, system, value_code, _text(value.get("display"))))
    elif fhir_type == "Identifier" and isinstance(value, dict):
        _identifier_rows(code, value, rows)
    elif fhir_type == "ContactPoint" and isinstance(value, dict):
        if contact := _clip(value.get("value")):
            rows.token.append(TokenRow(code, _clip(value.get("system")), contact))
    elif isinstance(value, bool):
        rows.token.append(TokenRow(code, None, "true" if value else "false"))
    elif isinstance(value, str) and value:
        rows.token.append(TokenRow(code, None, _clip(value)))
    elif isinstance(value, int | Decimal):
        rows.token.append(TokenRow(code, None, str(value)))


_NAME_PARTS = ("prefix", "given", "family", "suffix")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


def _parts(value: dict[str, Any], keys: Iterable[str]) -> list[str]:
    found: list[str] = []
    for key in keys:
        part = value.get(key)
        if isinstance(part, list):
            found.extend(p for p in part if isinstance(p, str))
        elif isinstance(part, str):
            found.append(part)
    return found


def add_string(
    code: str, value: Any, fhir_type: str | None, base: str | None, rows: IndexRows
) -> None:
    if fhir_type == "HumanName" and isinstance(value, dict):
        parts = _parts(value, _NAME_PARTS)
        if isinstance(value.get("text"), str):
            parts.append(value["text"])
        given, family = _parts(value, ("given",)), value.get("family")
        if given and isinstance(family, str):  # whole-name searches, in either order
            parts += [" ".join([*given, family]), " ".join([family, *given])]
    elif fhir_type == "Address" and isinstance(value, dict):
        parts = _parts(value, _ADDRESS_PARTS)
    elif isinstance(value, str):
        parts = [value]
    else:
        return
    for part in parts:
        if norm := normalize(part):
            rows.string.append(StringRow(code, norm[:MAX_INDEXED], part))


def add_reference(
    code: str, value: Any, fhir_type: str | None, base: str | None, rows: IndexRows
) -> None:
    if isinstance(value, str):  # canonical, uri
        url, _, version = value.partition("|")
        if url:
            rows.reference.append(
                ReferenceRow(code, None, None, version[:64] or None, url[:MAX_URI])
            )
        return
    if not isinstance(value, dict):
        return
    reference = value.get("reference")
    parsed = parse_reference(reference, base) if isinstance(reference, str) else None
    if parsed is not None:
        target_type, target_id, target_version, target_url = parsed
        clipped = target_url[:MAX_URI] if target_url else None
        rows.reference.append(ReferenceRow(code, target_type, target_id, target_version, clipped))
    if isinstance(value.get("identifier"), dict):
        _identifier_rows(code, value["identifier"], rows)


def _add_range(code: str, start: Any, end: Any, rows: IndexRows) -> None:
    low = date_range(start) if isinstance(start, str) else None
    high = date_range(end) if isinstance(end, str) else None
    if low is None and high is None:
        return
    rows.date.append(DateRow(code, low[0] if low else MIN_DATE, high[1] if high else MAX_DATE))


def add_date(
    code: str, value: Any, fhir_type: str | None, base: str | None, rows: IndexRows
) -> None:
    if isinstance(value, str):
        if found := date_range(value):
            rows.date.append(DateRow(code, *found))
    elif isinstance(value, dict):
        if fhir_type == "Timing" or "event" in value or "repeat" in value:
            for event in _items(value.get("event")):
                add_date(code, event, "dateTime", base, rows)
            repeat = value.get("repeat")
            bounds = repeat.get("boundsPeriod") if isinstance(repeat, dict) else None
            if isinstance(bounds, dict):
                _add_range(code, bounds.get("start"), bounds.get("end"), rows)
        elif "start" in value or "end" in value:
            _add_range(code, value.get("start"), value.get("end"), rows)


def add_number(
    code: str, value: Any, fhir_type: str | None, base: str | None, rows: IndexRows
) -> None:
    number = to_decimal(value)
    if number is not None:
        rows.number.append(NumberRow(code, number, *number_range(number)))


def add_quantity(
    code: str, value: Any, fhir_type: str | None, base: str | None, rows: IndexRows
) -> None:
    if not isinstance(value, dict):
        return
    if fhir_type == "Range" or (fhir_type is None and ("low" in value or "high" in value)):
        low, high = value.get("low") or {}, value.get("high") or {}
        if to_decimal(low.get("value")) is None and to_decimal(high.get("value")) is None:
            return
        unit_of = low or high
        rows.quantity.append(
            QuantityRow(
                code,
                None,
                to_decimal(low.get("value")),
                to_decimal(high.get("value")),
                _clip(unit_of.get("system")),
                _clip(unit_of.get("code")),
                _clip(unit_of.get("unit")),
            )
        )
        return
    number = to_decimal(value.get("value"))
    if number is None:
        return
    low, high = number_range(number)
    system: Any
    if "currency" in value:  # Money
        system, unit_code, unit = "urn:iso:std:iso:4217", value.get("currency"), None
    else:
        system, unit_code, unit = value.get("system"), value.get("code"), value.get("unit")
    rows.quantity.append(
        QuantityRow(code, number, low, high, _clip(system), _clip(unit_code), _clip(unit))
    )


def add_uri(
    code: str, value: Any, fhir_type: str | None, base: str | None, rows: IndexRows
) -> None:
    if isinstance(value, str) and value:
        rows.uri.append(UriRow(code, value[:MAX_URI]))


Converter = Callable[[str, Any, str | None, str | None, IndexRows], None]
CONVERTERS: dict[str, Converter] = {
    "token": add_token,
    "string": add_string,
    "reference": add_reference,
    "date": add_date,
    "number": add_number,
    "quantity": add_quantity,
    "uri": add_uri,
}


def _float(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def _component_values(param_type: str, nodes: list[Node], base: str | None) -> list[dict[str, Any]]:
    """The values of one composite component, as small JSON objects."""
    rows = IndexRows()
    for value, fhir_type in nodes:
        CONVERTERS[param_type]("", value, fhir_type, base, rows)
    values: list[dict[str, Any]] = []
    values += [{"system": r.system, "code": r.code} for r in rows.token if r.code]
    values += [{"value": r.value_norm} for r in rows.string]
    values += [{"type": r.target_type, "id": r.target_id, "url": r.url} for r in rows.reference]
    values += [
        {
            "low": r.low.isoformat(timespec="microseconds"),
            "high": r.high.isoformat(timespec="microseconds"),
        }
        for r in rows.date
    ]
    values += [
        {"value": float(r.value), "low": float(r.low), "high": float(r.high)} for r in rows.number
    ]
    values += [
        {
            "value": _float(r.value),
            "low": _float(r.low),
            "high": _float(r.high),
            "system": r.system,
            "code": r.code,
            "unit": r.unit,
        }
        for r in rows.quantity
    ]
    values += [{"uri": r.uri} for r in rows.uri]
    return values


# --- per-type extractors ----------------------------------------------------------

Extractor = Callable[[dict[str, Any], str | None, IndexRows], None]


def _simple_extractor(param: SearchParam, getters: list[Getter]) -> Extractor:
    convert = CONVERTERS[param.type]
    code = param.code

    def extract(resource: dict[str, Any], base: str | None, rows: IndexRows) -> None:
        for getter in getters:
            for value, fhir_type in getter(resource):
                convert(code, value, fhir_type, base, rows)

    return extract


def _composite_extractor(param: SearchParam, resource_type: str) -> Extractor:
    roots: list[tuple[_Plan, list[tuple[str, Getter]]]] = []
    for branch in split_union(param.expression):
        plans = compile_path(normalise_branch(branch)[0], resource_type, resource_type)
        if plans is None:
            raise ValueError(f"composite root not supported: {branch}")
        for plan in plans:
            parts: list[tuple[str, Getter]] = []
            for component in param.components:
                sub: list[_Plan] = []
                for piece in split_union(component.expression):
                    found = compile_path(normalise_branch(piece)[0], plan.type_path, None)
                    if found is None:
                        raise ValueError(f"composite component not supported: {piece}")
                    sub.extend(_accepted(found, component.type))
                parts.append((component.type, _plans_getter(sub)))
            roots.append((plan, parts))

    def extract(resource: dict[str, Any], base: str | None, rows: IndexRows) -> None:
        for plan, parts in roots:
            for node, _ in run_plans([plan], resource):
                values: list[list[dict[str, Any]]] = []
                for kind, get in reversed(parts):  # the value part is the one often absent
                    found = _component_values(kind, get(node), base)
                    if not found:
                        break
                    values.insert(0, found)
                else:
                    for combination in product(*values):
                        rows.composite.append(CompositeRow(param.code, combination))

    return extract


def _compile(param: SearchParam, resource_type: str) -> Extractor:
    if param.type == "composite":
        return _composite_extractor(param, resource_type)
    if param.type not in CONVERTERS:
        raise ValueError(f"parameter type {param.type} is not indexed")
    getters = [compile_branch(b, resource_type, param.type) for b in split_union(param.expression)]
    return _simple_extractor(param, getters)


def _roots(param: SearchParam, resource_type: str) -> frozenset[str] | None:
    """The top-level JSON keys a parameter reads; None when any key may matter."""
    if param.type == "composite":
        return None
    keys: set[str] = set()
    for branch in split_union(param.expression):
        text, _ref_type = normalise_branch(branch)
        match = _PRESENT_NOT_FALSE.match(text)
        plans = compile_path(match.group(1) if match else text, resource_type, resource_type)
        if plans is None:
            return None  # evaluated by fhirpathpy
        for plan in plans:
            if not plan.steps or not isinstance(plan.steps[0], str):
                return None
            keys.add(plan.steps[0])
    return frozenset(keys)


Compiled = tuple[str, Extractor, frozenset[str] | None]


@cache
def _compiled(resource_type: str) -> tuple[tuple[Compiled, ...], dict[str, str]]:
    extractors: list[Compiled] = []
    skipped: dict[str, str] = {}
    for code, param in declared_params(resource_type).items():
        if param.column is not None:
            continue
        try:
            extractor = _compile(param, resource_type)
        except Exception as exc:
            skipped[code] = f"{param.expression}: {exc}"
            continue
        extractors.append((code, extractor, _roots(param, resource_type)))
    return tuple(extractors), skipped


def skipped_params(resource_type: str) -> dict[str, str]:
    """Parameters of `resource_type` that cannot be indexed, with the reason."""
    return dict(_compiled(resource_type)[1])


def indexed_params(resource_type: str) -> set[str]:
    """Codes of the parameters extract_index computes for `resource_type`."""
    return {code for code, _extractor, _keys in _compiled(resource_type)[0]}


@cache
def index_kinds(resource_type: str) -> frozenset[str]:
    """The IndexRows fields extract_index can fill for `resource_type`."""
    params = declared_params(resource_type)
    kinds = {params[code].type for code in indexed_params(resource_type)}
    if "reference" in kinds:
        kinds.add("token")  # Reference.identifier, for :identifier
    return frozenset(kinds)


def extract_index(
    resource_type: str, resource: dict[str, Any], base_url: str | None = None
) -> IndexRows:
    """Every search index row of `resource`, ready for write_index.

    `base_url` is the server's FHIR base: absolute references under it are
    indexed like relative ones.
    """
    rows = IndexRows()
    base = base_url.rstrip("/") if base_url else None
    present = resource.keys()
    for code, extractor, roots in _compiled(resource_type)[0]:
        if roots is not None and roots.isdisjoint(present):
            continue  # the elements it reads are absent
        try:
            extractor(resource, base, rows)
        except Exception:  # one odd value must not fail the write
            log.warning("search index: %s.%s not extracted", resource_type, code, exc_info=True)
    rows.token = list(dict.fromkeys(rows.token))
    rows.string = list(dict.fromkeys(rows.string))
    rows.reference = list(dict.fromkeys(rows.reference))
    rows.date = list(dict.fromkeys(rows.date))
    rows.number = list(dict.fromkeys(rows.number))
    rows.quantity = list(dict.fromkeys(rows.quantity))
    rows.uri = list(dict.fromkeys(rows.uri))
    return rows
