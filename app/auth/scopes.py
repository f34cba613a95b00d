"""SMART scopes: grammar, granting and evaluation.

Forms accepted (SMART App Launch v2 and v1):

    system/Patient.rs          v2: a non-empty subset of c r u d s, in that order
    system/*.read              v1: .read = r s, .write = c u d, .* = c r u d s
    system/*.rs?_security=https://relais.dev/fhir/CodeSystem/case-domain|legal

The only granular constraint understood is `_security` on the case-domain
system, with one code; anything else is rejected rather than silently widened.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

from app.resources.domains import DOMAIN_SYSTEM, DOMAINS

DOMAIN_CODES = frozenset(DOMAINS)

CONTEXTS = ("system", "patient", "user")
LETTERS = "cruds"
V1_LETTERS = {"read": "rs", "write": "cud", "*": "cruds"}

# FHIR interaction name -> SMART v2 permission letter.
INTERACTION_LETTER = {
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "search-type": "s",
    "search-system": "s",
    "history-type": "s",
    "history-system": "s",
    "create": "c",
    "update": "u",
    "patch": "u",
    "delete": "d",
}

SUPPORTED_SCOPES_EXAMPLES = [
    "system/*.cruds",
    "system/*.rs",
    "system/*.read",
    "system/*.write",
    "system/*.*",
    "system/Patient.rs",
    "system/Task.cru",
    f"system/*.rs?_security={DOMAIN_SYSTEM}|medical",
    f"system/*.cruds?_security={DOMAIN_SYSTEM}|legal",
]

_SCOPE_RE = re.compile(
    r"(?P<context>[a-z]+)/(?P<type>\*|[A-Z][A-Za-z]{0,63})\.(?P<perm>[a-z]+|\*)"
    r"(?:\?(?P<query>.+))?"
)
_V2_RE = re.compile(r"c?r?u?d?s?")


@dataclass(frozen=True)
class Scope:
    context: str
    resource_type: str
    interactions: frozenset[str]
    domain: str | None = None

    @property
    def text(self) -> str:
        """The canonical v2 spelling."""
        letters = "".join(x for x in LETTERS if x in self.interactions)
        text = f"{self.context}/{self.resource_type}.{letters}"
        if self.domain is not None:
            text += f"?_security={DOMAIN_SYSTEM}|{self.domain}"
        return text

    def covers(self, other: Scope) -> bool:
        """True when every access `other` grants is also granted by this scope."""
        return (
            self.context == other.context
            and self.resource_type in ("*", other.resource_type)
            and self.interactions >= other.interactions
            and self.domain in (None, other.domain)
        )


def parse_scope(text: str) -> Scope:
    match = _SCOPE_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"'{text}' is not a SMART resource scope")
    context = match["context"]
    if context not in CONTEXTS:
        raise ValueError(f"'{text}': unknown context '{context}'")
    perm = match["perm"]
    letters = V1_LETTERS.get(perm)
    if letters is None:
        if not _V2_RE.fullmatch(perm):
            raise ValueError(
                f"'{text}': permissions must be .read, .write, .* or letters of 'cruds' in order"
            )
        letters = perm
    domain = _parse_constraint(text, match["query"]) if match["query"] else None
    return Scope(context, match["type"], frozenset(letters), domain)


def _parse_constraint(text: str, query: str) -> str:
    name, sep, value = query.partition("=")
    if not sep or name != "_security":
        raise ValueError(f"'{text}': the only granular constraint supported is _security")
    value = unquote(value)
    if "&" in value or "," in value:
        raise ValueError(f"'{text}': a scope may carry one _security code only")
    system, sep, code = value.partition("|")
    if not sep or system != DOMAIN_SYSTEM:
        raise ValueError(f"'{text}': _security must be {DOMAIN_SYSTEM}|<domain>")
    if code not in DOMAIN_CODES:
        raise ValueError(f"'{text}': unknown domain '{code}'")
    return code


def parse_scopes(text: str) -> list[Scope]:
    """Parse a space-separated scope string; backend services get system scopes only."""
    scopes = []
    for item in text.split():
        scope = parse_scope(item)
        if scope.context != "system":
            raise ValueError(f"'{item}': only system/ scopes are granted to backend services")
        scopes.append(scope)
    return scopes


def grant(requested: str, registered: str) -> str:
    """Granted scope = requested ∩ registered, decided scope by scope.

    A requested scope is granted, spelled as the client spelled it, when one
    registered scope covers it on its own (same or wider type, superset of
    letters, same domain or none). A requested scope that is not covered is
    dropped, not narrowed: the answer's `scope` tells the client what it got
    (RFC 6749 §3.3). Raises ValueError when a requested scope is malformed or
    when nothing at all can be granted.
    """
    wanted = requested.split()
    if not wanted:
        raise ValueError("scope is required")
    allowed = parse_scopes(registered)
    granted: list[str] = []
    for item, scope in zip(wanted, parse_scopes(requested), strict=True):
        if item not in granted and any(r.covers(scope) for r in allowed):
            granted.append(item)
    if not granted:
        raise ValueError("none of the requested scopes is registered for this client")
    return " ".join(granted)


def interaction_letter(interaction: str) -> str:
    """Map a FHIR interaction name (or a letter of 'cruds') to its SMART letter."""
    if len(interaction) == 1 and interaction in LETTERS:
        return interaction
    try:
        return INTERACTION_LETTER[interaction]
    except KeyError:
        raise ValueError(f"unknown interaction '{interaction}'") from None


class ScopeSet:
    """The scopes of one access token, asked about types, interactions and domains."""

    def __init__(self, scopes: str | Iterable[Scope]) -> None:
        self.scopes = tuple(parse_scopes(scopes) if isinstance(scopes, str) else scopes)

    def _covering(self, resource_type: str, interaction: str) -> list[Scope]:
        letter = interaction_letter(interaction)
        return [
            s
            for s in self.scopes
            if s.resource_type in ("*", resource_type) and letter in s.interactions
        ]

    def allows(self, resource_type: str, interaction: str) -> bool:
        """True when some scope covers the type and interaction, whatever its domain."""
        return bool(self._covering(resource_type, interaction))

    def domains_for(self, resource_type: str, interaction: str) -> set[str] | None:
        """None: every domain. Otherwise the domains the covering scopes allow
        (empty when no scope covers the type and interaction)."""
        domains: set[str] = set()
        for scope in self._covering(resource_type, interaction):
            if scope.domain is None:
                return None
            domains.add(scope.domain)
        return domains

    def covers_domain(self, resource_type: str, interaction: str, domain: str | None) -> bool:
        """`domain` None is a record without label (outside any compartment): the
        type and interaction suffice, as domain constraints restrict labelled records."""
        domains = self.domains_for(resource_type, interaction)
        if domains is None:
            return True
        return bool(domains) and (domain is None or domain in domains)

    def resource_types(self, interaction: str) -> set[str] | None:
        """Types reachable with the interaction (None: every type), for system-level
        search, history and export."""
        letter = interaction_letter(interaction)
        types: set[str] = set()
        for scope in self.scopes:
            if letter in scope.interactions:
                if scope.resource_type == "*":
                    return None
                types.add(scope.resource_type)
        return types


@lru_cache(maxsize=1024)
def scope_set(scope: str) -> ScopeSet:
    """ScopeSet of a token's `scope` claim, cached: the same strings recur on every request."""
    return ScopeSet(scope)
