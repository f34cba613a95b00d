"""Who may see which domain of one beneficiary: grants computed from its case records.

Pure functions over the beneficiary's current EpisodeOfCare, CareTeam and Consent
resources (SPEC §5):

- an active EpisodeOfCare grants its managingOrganization every domain, for the
  episode's period (`manage`);
- an organisation that is an active member of an active CareTeam (CareTeam.period ∩
  participant.period) gets the domains an active `patient-privacy` Consent permits it,
  for as long as both hold (`consent`).

Consent provisions: a provision applies to the organisations in its `actor` list and
the domains in its `securityLabel` list, inheriting either list from its parent when
it has none, and its period is intersected with its parent's. Within one provision
tree a nested provision overrides its parent where it applies (a nested deny wins over
the permit it sits in; a nested permit is an exception to a deny). Across provisions
and Consents, a deny wins over a permit. Fail-closed choices:

- a permit names its organisations: a permit without any (own or inherited)
  Organization actor grants nothing;
- a permit without securityLabel covers every domain; a label outside the case-domain
  system grants nothing;
- a deny without actor applies to every organisation, without securityLabel to every
  domain, and a deny whose labels are all outside the case-domain system to every
  domain (Relais cannot tell which records they would cover);
- a root deny that names neither actor nor label is the default ("deny unless
  permitted below") and does not veto other Consents.

An organisation permitted any domain also sees `coordination` (the case records it
needs to work on the case), unless a deny covers `coordination` for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.auth import periods
from app.auth.periods import Times
from app.resources.domains import COORDINATION, DOMAIN_SYSTEM, DOMAINS

CONSENT_SCOPE_CODE = "patient-privacy"
CASE_TYPES = ("EpisodeOfCare", "CareTeam", "Consent")


@dataclass(frozen=True)
class Grant:
    organization: str
    domain: str
    kind: str  # manage | consent
    valid_from: datetime | None
    valid_to: datetime | None
    source: str


def organization_ref(reference: Any) -> str | None:
    """`Organization/<id>` from a Reference (relative, absolute or versioned), else None."""
    if not isinstance(reference, dict):
        return None
    value = reference.get("reference")
    if not isinstance(value, str):
        return None
    parts = value.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == "Organization" and parts[-1]:
        return f"Organization/{parts[-1]}"
    return None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


# --- EpisodeOfCare and CareTeam ------------------------------------------------------


def managers(episodes: Iterable[dict[str, Any]]) -> list[tuple[str, Times, str]]:
    """(organisation, times, source) of every active EpisodeOfCare's managing organisation."""
    found = []
    for episode in episodes:
        org = organization_ref(episode.get("managingOrganization"))
        if episode.get("status") == "active" and org:
            found.append((org, periods.period(episode.get("period")), _ref(episode)))
    return found


def memberships(teams: Iterable[dict[str, Any]]) -> dict[str, Times]:
    """Organisation -> times it is an active member of an active CareTeam."""
    found: dict[str, Times] = {}
    for team in teams:
        if team.get("status") != "active":
            continue
        team_times = periods.period(team.get("period"))
        for participant in _as_list(team.get("participant")):
            if not isinstance(participant, dict):
                continue
            org = organization_ref(participant.get("member"))
            if org is None:
                continue
            times = periods.intersect(team_times, periods.period(participant.get("period")))
            found[org] = periods.union(found.get(org, []), times)
    return found


# --- Consent -----------------------------------------------------------------------


def is_privacy_consent(consent: dict[str, Any]) -> bool:
    if consent.get("status") != "active":
        return False
    scope = consent.get("scope")
    codings = scope.get("coding") if isinstance(scope, dict) else None
    return any(
        isinstance(c, dict) and c.get("code") == CONSENT_SCOPE_CODE for c in _as_list(codings)
    )


@dataclass(frozen=True)
class _Scope:
    actors: frozenset[str] | None  # None: every organisation
    labels: frozenset[str] | None  # None: every domain
    explicit: bool  # names an actor or a label (own or inherited)
    window: Times


def _actors(provision: dict[str, Any]) -> frozenset[str] | None:
    actors = _as_list(provision.get("actor"))
    if not actors:
        return None
    refs = (organization_ref(a.get("reference")) for a in actors if isinstance(a, dict))
    return frozenset(r for r in refs if r)


def _labels(provision: dict[str, Any], kind: str | None) -> frozenset[str] | None:
    labels = [c for c in _as_list(provision.get("securityLabel")) if isinstance(c, dict)]
    if not labels:
        return None
    codes = frozenset(
        str(c.get("code"))
        for c in labels
        if c.get("system") == DOMAIN_SYSTEM and c.get("code") in DOMAINS
    )
    if not codes and kind == "deny":
        return None  # labels Relais cannot evaluate: deny every domain
    return codes


def _scope_of(provision: dict[str, Any], parent: _Scope) -> _Scope:
    kind = provision.get("type")
    own_actors = _actors(provision)
    own_labels = _labels(provision, kind)
    has_labels = bool(_as_list(provision.get("securityLabel")))
    return _Scope(
        actors=own_actors if own_actors is not None else parent.actors,
        labels=own_labels if has_labels else parent.labels,
        explicit=parent.explicit or own_actors is not None or has_labels,
        window=periods.intersect(parent.window, periods.period(provision.get("period"))),
    )


def _decide(provision: Any, parent: _Scope, org: str, domain: str) -> tuple[Times, Times]:
    """(permitted, explicitly denied) times of `org` for `domain` under one provision."""
    if not isinstance(provision, dict):
        return [], []
    scope = _scope_of(provision, parent)
    applies = (scope.actors is None or org in scope.actors) and (
        scope.labels is None or domain in scope.labels
    )
    if not applies or not scope.window:
        return [], []
    results = [_decide(child, scope, org, domain) for child in _as_list(provision.get("provision"))]
    denied = periods.union(*(d for _, d in results))
    permitted = periods.subtract(periods.union(*(p for p, _ in results)), denied)
    kind = provision.get("type")
    if kind == "permit" and scope.actors is not None:
        return periods.subtract(scope.window, denied), denied
    if kind == "deny" and scope.explicit:
        return permitted, periods.subtract(scope.window, permitted)
    return permitted, denied


def consent_times(consents: list[dict[str, Any]], org: str, domain: str) -> tuple[Times, Times]:
    """Permitted and denied times of `org` for `domain`, over every active Consent."""
    root = _Scope(actors=None, labels=None, explicit=False, window=list(periods.ALWAYS))
    permitted: Times = []
    denied: Times = []
    for consent in consents:
        p, d = _decide(consent.get("provision"), root, org, domain)
        permitted = periods.union(permitted, p)
        denied = periods.union(denied, d)
    return permitted, denied


def permitted_domains(consents: list[dict[str, Any]], org: str) -> dict[str, Times]:
    """Domain -> times `org` is permitted, deny applied, coordination added."""
    result: dict[str, Times] = {}
    denied_coordination: Times = []
    for domain in DOMAINS:
        permitted, denied = consent_times(consents, org, domain)
        result[domain] = periods.subtract(permitted, denied)
        if domain == COORDINATION:
            denied_coordination = denied
    any_domain = periods.union(*(t for d, t in result.items() if d != COORDINATION))
    result[COORDINATION] = periods.union(
        result[COORDINATION], periods.subtract(any_domain, denied_coordination)
    )
    return {d: t for d, t in result.items() if t}


# --- all together --------------------------------------------------------------------


def compute_grants(resources: Iterable[dict[str, Any]]) -> list[Grant]:
    """Every grant over one beneficiary, from its current case records."""
    by_type: dict[str, list[dict[str, Any]]] = {t: [] for t in CASE_TYPES}
    for resource in resources:
        if resource.get("resourceType") in by_type:
            by_type[str(resource["resourceType"])].append(resource)
    grants: list[Grant] = []
    for org, times, source in managers(by_type["EpisodeOfCare"]):
        for span in times:
            start, end = periods.bounds(span)
            grants += [Grant(org, d, "manage", start, end, source) for d in DOMAINS]
    consents = [c for c in by_type["Consent"] if is_privacy_consent(c)]
    sources = ",".join(_ref(c) for c in consents)[:200]
    for org, member_times in memberships(by_type["CareTeam"]).items():
        for domain, times in permitted_domains(consents, org).items():
            for span in periods.intersect(times, member_times):
                start, end = periods.bounds(span)
                grants.append(Grant(org, domain, "consent", start, end, sources))
    return grants
