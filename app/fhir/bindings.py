"""Codes of elements bound to a required ValueSet in the base R4B spec.

The allowed codes live in data/required-bindings.json, keyed by element path
("Patient.gender", "Identifier.use", "Patient.contact.gender"); its "$valueSets"
entry names each path's ValueSet and "$systems" the code system of paths typed
Coding or CodeableConcept. They were expanded from the R4B (4.3.0) core
package; bindings to external systems (mime types, currencies) are left out.

For each model class we precompute a plan: the JSON names worth visiting, with
the codes to check and the plan of the child class. Checking then walks plain
dicts only.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from app.fhir.outcomes import FhirError

DATA_FILE = Path(__file__).parent / "data" / "required-bindings.json"


@dataclass(slots=True)
class Rule:
    """What to do with one JSON name of an element."""

    codes: frozenset[str] | None = None
    value_set: str = ""
    system: str | None = None  # set for Coding / CodeableConcept bindings
    concept: bool = False  # a CodeableConcept rather than a Coding
    child: Plan | None = None
    any_resource: bool = False  # contained, Bundle.entry.resource: check by resourceType


@dataclass(slots=True)
class Plan:
    rules: dict[str, Rule] = field(default_factory=dict)


@dataclass(slots=True)
class _Bindings:
    codes: dict[str, frozenset[str]]
    value_sets: dict[str, str]
    systems: dict[str, str]


def _load() -> _Bindings:
    raw = json.loads(DATA_FILE.read_text())
    value_sets = raw.pop("$valueSets", {})
    systems = raw.pop("$systems", {})
    codes = {path: frozenset(values) for path, values in raw.items()}
    return _Bindings(codes, value_sets, systems)


_BINDINGS = _load()


def model_class_of(annotation: Any) -> type | None:
    """The fhir.resources model class behind a field annotation, if any."""
    for arg in typing.get_args(annotation) or (annotation,):
        if arg is type(None):
            continue
        if typing.get_args(arg):
            found = model_class_of(arg)
            if found is not None:
                return found
            continue
        dotted = getattr(arg, "_model_klass", None) if isinstance(arg, type) else None
        if isinstance(dotted, str):
            module, _, name = dotted.rpartition(".")
            cls: type = getattr(import_module(module), name)
            return cls
    return None


def _is_type_root(cls: type) -> bool:
    # Patient lives in patient.py, PatientContact too: only the former is a type.
    return cls.__name__.lower() == cls.__module__.rsplit(".", 1)[-1]


class _Planner:
    """Builds plans once per model class and keeps them."""

    def __init__(self, bindings: _Bindings) -> None:
        self.bindings = bindings
        self.plans: dict[type, Plan] = {}
        self.prefixes: dict[type, list[str]] = {}
        self.by_type: dict[str, Plan | None] = {}

    def for_type(self, resource_type: str) -> Plan | None:
        if resource_type not in self.by_type:
            try:
                cls = get_fhir_model_class(resource_type)
            except (KeyError, ValueError, AttributeError, ImportError):
                cls = None
            self.by_type[resource_type] = self._build(cls) if cls is not None else None
        return self.by_type[resource_type]

    def _build(self, root: type) -> Plan:
        # Discover every class reachable from root and the paths it sits under.
        edges: dict[type, list[tuple[str, type]]] = {}
        stack = [(root, root.__name__)]
        while stack:
            cls, prefix = stack.pop()
            if _is_type_root(cls):
                prefix = cls.__name__
            known = self.prefixes.setdefault(cls, [])
            if prefix not in known:
                known.append(prefix)
            if cls in edges or cls in self.plans:
                continue
            edges[cls] = []
            for info in cls.model_fields.values():  # type: ignore[attr-defined]
                child = model_class_of(info.annotation)
                if child is None:
                    continue
                name = info.alias or ""
                edges[cls].append((name, child))
                stack.append((child, f"{prefix}.{name.lstrip('_')}"))
        self._resolve(edges)
        return self.plans[root]

    def _direct_rules(self, cls: type) -> dict[str, Rule]:
        rules: dict[str, Rule] = {}
        for info in cls.model_fields.values():  # type: ignore[attr-defined]
            name = info.alias or ""
            if not name or name.startswith("_"):
                continue
            for prefix in self._prefixes_with_bases(cls):
                path = f"{prefix}.{name}"
                codes = self.bindings.codes.get(path)
                if codes is not None:
                    child = model_class_of(info.annotation)
                    rules[name] = Rule(
                        codes=codes,
                        value_set=self.bindings.value_sets.get(path, path),
                        system=self.bindings.systems.get(path),
                        concept=child is not None and child.__name__ == "CodeableConcept",
                    )
                    break
        return rules

    def _prefixes_with_bases(self, cls: type) -> list[str]:
        # Age, Count, Distance, Duration inherit Quantity's bindings.
        found = list(self.prefixes.get(cls, []))
        found.extend(base.__name__ for base in cls.__mro__[1:] if _is_type_root(base))
        return found

    def _resolve(self, edges: dict[type, list[tuple[str, type]]]) -> None:
        direct = {cls: self._direct_rules(cls) for cls in edges}
        # A class matters when it holds a bound element or reaches one.
        relevant = {cls for cls, rules in direct.items() if rules}
        relevant |= {cls for cls, plan in self.plans.items() if plan.rules}
        changed = True
        while changed:
            changed = False
            for cls, children in edges.items():
                if cls not in relevant and any(child in relevant for _, child in children):
                    relevant.add(cls)
                    changed = True
        for cls in edges:
            self.plans[cls] = Plan(dict(direct[cls]))
        for cls, children in edges.items():
            rules = self.plans[cls].rules
            for name, child in children:
                if child.__name__ == "Resource":
                    rules[name] = Rule(any_resource=True)
                elif child in relevant:
                    rule = rules.setdefault(name, Rule())
                    rule.child = self.plans[child]


_PLANNER = _Planner(_BINDINGS)


def _path(parent: str, name: str, index: int | None) -> str:
    return f"{parent}.{name}" if index is None else f"{parent}.{name}[{index}]"


def _check_code(value: Any, rule: Rule, where: str, errors: list[tuple[str, str]]) -> None:
    codes = rule.codes or frozenset()
    if rule.system is None:
        if not (isinstance(value, str) and value in codes):
            errors.append((where, _message(where, value, rule)))
        return
    if not isinstance(value, dict):
        return
    codings = (value.get("coding") or []) if rule.concept else [value]
    if not isinstance(codings, list):
        return
    from_system = False
    for i, coding in enumerate(codings):
        if not isinstance(coding, dict) or coding.get("system") != rule.system:
            continue
        from_system = True
        code = coding.get("code")
        if code not in codes:
            at = f"{where}.coding[{i}].code" if rule.concept else f"{where}.code"
            errors.append((at, _message(at, code, rule)))
    # An element carrying only extensions (e.g. data-absent-reason) has no code to check.
    if not from_system and (codings or "text" in value):
        text = f"{where}: no code from the required value set {rule.value_set} ({rule.system})"
        errors.append((where, text))


def _message(where: str, value: Any, rule: Rule) -> str:
    allowed = ", ".join(sorted(rule.codes or ()))
    shown = value if isinstance(value, str) else json.dumps(value)
    return (
        f"{where}: '{shown}' is not in the required value set {rule.value_set} (allowed: {allowed})"
    )


def _walk(node: dict[str, Any], plan: Plan, where: str, errors: list[tuple[str, str]]) -> None:
    rules = plan.rules
    for name, value in node.items():
        rule = rules.get(name)
        if rule is None or value is None:
            continue
        items = value if isinstance(value, list) else (value,)
        many = isinstance(value, list)
        for i, item in enumerate(items):
            if item is None:
                continue
            at = _path(where, name, i if many else None)
            if rule.any_resource:
                _check_resource(item, at, errors)
                continue
            if rule.codes is not None:
                _check_code(item, rule, at, errors)
            if rule.child is not None and isinstance(item, dict):
                _walk(item, rule.child, at, errors)


def _check_resource(item: Any, where: str, errors: list[tuple[str, str]]) -> None:
    if not isinstance(item, dict):
        return
    resource_type = item.get("resourceType")
    plan = _PLANNER.for_type(resource_type) if isinstance(resource_type, str) else None
    if plan is not None:
        _walk(item, plan, where, errors)


def prepare(resource_types: Iterable[str]) -> None:
    """Build plans ahead of the first write (building one costs up to ~0.2 s)."""
    for resource_type in resource_types:
        _PLANNER.for_type(resource_type)


def binding_errors(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """(expression, diagnostics) for every code outside its required value set."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return []
    plan = _PLANNER.for_type(resource_type)
    errors: list[tuple[str, str]] = []
    if plan is not None:
        _walk(resource, plan, resource_type, errors)
    return errors


def check_required_bindings(resource: dict[str, Any]) -> None:
    """Raise a 422 code-invalid FhirError naming every bad code, first one first."""
    errors = binding_errors(resource)
    if not errors:
        return
    (first_at, first_text), rest = errors[0], errors[1:]
    extra = [
        {"severity": "error", "code": "code-invalid", "diagnostics": text, "expression": [at]}
        for at, text in rest
    ]
    raise FhirError(422, "code-invalid", first_text, expression=[first_at], issues=extra)
