"""The French INS-NIR (numéro d'inscription au répertoire) and its control key."""

from __future__ import annotations

import re

INS_NIR_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"

# sex, year, month, department (2A/2B for Corsica), commune, order number, key
_NIR = re.compile(r"^(\d{5})(\d{2}|2A|2B)(\d{6})(\d{2})$")

# Corsica departments are replaced by numbers for the key computation only.
_CORSICA = {"2A": "19", "2B": "18"}


def nir_key_valid(value: str) -> bool:
    """True when `value` is 13 characters plus a 2-digit key equal to 97 - (number mod 97).

    Spaces are ignored; the Corsican departments 2A and 2B count as 19 and 18.
    """
    match = _NIR.match("".join(value.split()).upper())
    if match is None:
        return False
    head, department, tail, key = match.groups()
    number = int(head + _CORSICA.get(department, department) + tail)
    return int(key) == 97 - number % 97
