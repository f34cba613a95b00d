"""Search values as written in a query, parsed per parameter type.

A value that cannot be parsed raises Invalid; the engine then answers 400 or
ignores the parameter, depending on the handling the client asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from app.fhir.search.extract import date_range, normalize, number_range, parse_reference, to_decimal

PREFIXES = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})


class Invalid(ValueError):
    """An unknown or malformed search parameter."""


@dataclass(frozen=True)
class TokenValue:
    system: str | None  # None: any system; "": no system (`|code`)
    code: str | None  # None: any code (`system|`)


@dataclass(frozen=True)
class OfType:
    type_system: str
    type_code: str
    value: str


@dataclass(frozen=True)
class TextValue:
    """`:text` on a token, `:contains` or the default starts-with on a string."""

    text: str


@dataclass(frozen=True)
class ExactValue:
    text: str


@dataclass(frozen=True)
class ReferenceValue:
    type: str | None
    id: str | None
    url: str | None  # an absolute URL outside the base, or a canonical
    version: str | None = None


@dataclass(frozen=True)
class DateValue:
    prefix: str
    low: datetime
    high: datetime


@dataclass(frozen=True)
class NumberValue:
    prefix: str
    value: Decimal
    low: Decimal  # the implicit precision range of the value
    high: Decimal


@dataclass(frozen=True)
class QuantityValue:
    number: NumberValue
    system: str | None
    code: str | None


@dataclass(frozen=True)
class UriValue:
    uri: str


SearchValue = (
    TokenValue
    | OfType
    | TextValue
    | ExactValue
    | ReferenceValue
    | DateValue
    | NumberValue
    | QuantityValue
    | UriValue
    | tuple["SearchValue", ...]  # composite: one value per component
)


# --- escapes (`\,` `\|` `\$` `\\`) -------------------------------------------------------


def split_escaped(text: str, separator: str) -> list[str]:
    """Split on `separator` where it is not escaped; escapes stay for later splits."""
    if "\\" not in text:
        return text.split(separator)  # nothing escaped: the common case, at C speed
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


# --- per type ----------------------------------------------------------------------------


def split_prefix(text: str) -> tuple[str, str]:
    if len(text) > 2 and text[:2] in PREFIXES and not text[2].isalpha():
        return text[:2], text[2:]
    return "eq", text


def parse_date(text: str) -> DateValue:
    prefix, rest = split_prefix(unescape(text))
    found = date_range(rest)
    if found is None:
        raise Invalid(f"'{text}' is not a date, dateTime or instant")
    return DateValue(prefix, *found)


def parse_number(text: str) -> NumberValue:
    prefix, rest = split_prefix(unescape(text).strip())
    number = to_decimal(rest) if rest and rest[0] in "+-.0123456789" else None
    if number is None:
        raise Invalid(f"'{text}' is not a number")
    return NumberValue(prefix, number, *number_range(number))


def parse_quantity(text: str) -> QuantityValue:
    parts = split_escaped(text, "|")
    if len(parts) not in (1, 3):
        raise Invalid(f"'{text}' is not a quantity (number|system|code)")
    number = parse_number(parts[0])
    system = unescape(parts[1]) or None if len(parts) == 3 else None
    code = unescape(parts[2]) or None if len(parts) == 3 else None
    return QuantityValue(number, system, code)


def parse_token(text: str, modifier: str | None) -> SearchValue:
    if modifier == "text":
        return TextValue(normalize(unescape(text)))
    parts = split_escaped(text, "|")
    if modifier == "of-type":
        if len(parts) != 3 or not all(parts):
            raise Invalid(f"'{text}' is not type-system|type-code|value")
        return OfType(*(unescape(p) for p in parts))
    if len(parts) == 1:
        return TokenValue(None, unescape(parts[0]))
    if len(parts) != 2:
        raise Invalid(f"'{text}' is not a token (system|code)")
    system, code = unescape(parts[0]), unescape(parts[1])
    if not system and not code:
        raise Invalid("'|' alone is not a token")
    return TokenValue(system, code or None)


def parse_string(text: str, modifier: str | None) -> SearchValue:
    value = unescape(text)
    if modifier == "exact":
        return ExactValue(value)
    norm = normalize(value)
    if not norm:
        raise Invalid(f"'{text}' has no searchable characters")
    return TextValue(norm)


def parse_reference_value(
    text: str, targets: tuple[str, ...], modifier: str | None, base_url: str
) -> SearchValue:
    if modifier == "identifier":
        return parse_token(text, None)
    value = unescape(text)
    url, bar, version = value.partition("|")
    if bar and "://" in url:  # canonical with a version
        return ReferenceValue(None, None, url, version or None)
    parsed = parse_reference(value, base_url.rstrip("/"))
    if parsed is None:
        raise Invalid(f"'{text}' is not a reference")
    ref_type, ref_id, _version, ref_url = parsed
    if ref_type is not None:
        if modifier is not None and modifier != ref_type:
            raise Invalid(f"'{text}' is not a {modifier} reference")
        return ReferenceValue(ref_type, ref_id, None)
    if ref_url is not None and ("/" in ref_url or ":" in ref_url):
        return ReferenceValue(None, None, ref_url)
    # A bare id: the modifier or the parameter's only target gives its type.
    known = [t for t in targets if t != "Resource"]
    ref_type = modifier or (known[0] if len(known) == 1 else None)
    return ReferenceValue(ref_type, value, None)


def parse_uri(text: str) -> UriValue:
    value = unescape(text)
    if not value:
        raise Invalid("an empty uri")
    return UriValue(value)
