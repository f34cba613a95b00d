"""Search parameter types and modifiers (issue 3, points 1-3), over HTTP on both databases."""

from __future__ import annotations

from tests.search_helpers import SYS, create, goal, ids, person, task


async def test_string_default_exact_contains(client, uid):
    helene = await create(client, person(uid, f"Lefèvre{uid}", "Hélène"))
    zoe = await create(client, person(uid, f"Œuvray{uid}", "Zoé"))
    tag = f"{SYS}|{uid}-"
    assert await ids(client, "/fhir/Patient", name="helene", identifier=tag + f"Lefèvre{uid}") == [
        helene
    ]
    # Accent- and case-insensitive starts-with, on family names too.
    assert await ids(client, "/fhir/Patient", family=f"LEFEVRE{uid}") == [helene]
    assert await ids(client, "/fhir/Patient", family=f"oeuvray{uid}") == [zoe]
    assert await ids(client, "/fhir/Patient", family=f"lef{uid}") == []  # not a prefix
    # :exact is case- and accent-sensitive and whole-value.
    assert await ids(client, "/fhir/Patient", **{"family:exact": f"Lefèvre{uid}"}) == [helene]
    assert await ids(client, "/fhir/Patient", **{"family:exact": f"Lefevre{uid}"}) == []
    # :contains finds the value anywhere.
    assert await ids(client, "/fhir/Patient", **{"family:contains": f"VRE{uid}"}) == [helene]
    # Full name, either order.
    assert await ids(client, "/fhir/Patient", name=f"helene lefevre{uid}") == [helene]


async def test_token_forms_and_modifiers(client, uid):
    typed = {
        "system": SYS,
        "value": f"nir-{uid}",
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]
        },
    }
    a = await create(client, {"resourceType": "Patient", "identifier": [typed], "gender": "female"})
    b = await create(
        client,
        {"resourceType": "Patient", "identifier": [{"value": f"nir-{uid}"}], "gender": "male"},
    )
    both = sorted([a, b])
    assert await ids(client, "/fhir/Patient", identifier=f"nir-{uid}") == both
    assert await ids(client, "/fhir/Patient", identifier=f"{SYS}|nir-{uid}") == [a]
    assert await ids(client, "/fhir/Patient", identifier=f"|nir-{uid}") == [b]  # no system
    assert await ids(client, "/fhir/Patient", identifier=f"{SYS}|", _id=f"{a},{b}") == [a]
    of_type = f"http://terminology.hl7.org/CodeSystem/v2-0203|SS|nir-{uid}"
    assert await ids(client, "/fhir/Patient", **{"identifier:of-type": of_type}) == [a]
    # :not keeps resources without the value (and those with none at all).
    assert await ids(client, "/fhir/Patient", _id=f"{a},{b}", **{"gender:not": "male"}) == [a]
    # :missing
    assert (
        await ids(client, "/fhir/Patient", _id=f"{a},{b}", **{"birthdate:missing": "true"}) == both
    )
    assert await ids(client, "/fhir/Patient", _id=f"{a},{b}", **{"gender:missing": "false"}) == both


async def test_token_text_and_codeable_concepts(client, uid):
    cond = await create(
        client,
        {
            "resourceType": "Condition",
            "subject": {"reference": f"Patient/{await create(client, person(uid, 'T', 'x'))}"},
            "code": {
                "coding": [
                    {
                        "system": "http://snomed.info/sct",
                        "code": f"c{uid}",
                        "display": "Fracture du fémur",
                    }
                ],
                "text": f"Fémur {uid}",
            },
        },
    )
    assert await ids(client, "/fhir/Condition", code=f"http://snomed.info/sct|c{uid}") == [cond]
    assert await ids(client, "/fhir/Condition", **{"code:text": f"femur {uid}"}) == [cond]
    assert await ids(client, "/fhir/Condition", **{"code:text": "femur"}, code=f"c{uid}") == [cond]


async def test_or_within_and_across_parameters(client, uid):
    a = await create(client, person(uid, f"Alpha{uid}", "Anne", gender="female"))
    b = await create(client, person(uid, f"Beta{uid}", "Bruno", gender="male"))
    await create(client, person(uid, f"Gamma{uid}", "Gil", gender="male"))
    assert await ids(client, "/fhir/Patient", family=f"alpha{uid},beta{uid}") == sorted([a, b])
    # Repeated parameters are AND.
    r = await client.get(
        "/fhir/Patient", params=[("family", f"alpha{uid},beta{uid}"), ("gender", "male")]
    )
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [b]
    r = await client.get(
        "/fhir/Patient", params=[("family", f"alpha{uid}"), ("family", f"beta{uid}")]
    )
    assert r.json()["total"] == 0


async def test_reference_forms(client, backend, uid):
    pid = await create(client, person(uid, "Ref", "R"))
    gid = await create(client, goal(f"Patient/{pid}"))
    base = backend.settings.fhir_base
    for value in (f"Patient/{pid}", pid, f"{base}/Patient/{pid}"):
        assert await ids(client, "/fhir/Goal", subject=value) == [gid], value
    assert await ids(client, "/fhir/Goal", **{"subject:Patient": pid}) == [gid]
    assert await ids(client, "/fhir/Goal", **{"subject:Group": pid}) == []
    assert await ids(client, "/fhir/Goal", patient=pid) == [gid]
    # An absolute reference written under the base is indexed like a relative one.
    g2 = await create(client, goal(f"{base}/Patient/{pid}", "courir"))
    assert await ids(client, "/fhir/Goal", subject=f"Patient/{pid}") == sorted([gid, g2])


async def test_reference_identifier_modifier(client, uid):
    owner = {"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.2", "value": f"fin-{uid}"}}
    tid = await create(client, task(owner=owner))
    value = f"urn:oid:1.2.250.1.71.4.2.2|fin-{uid}"
    assert await ids(client, "/fhir/Task", **{"owner:identifier": value}) == [tid]
    assert await ids(client, "/fhir/Task", **{"owner:identifier": f"fin-{uid}"}) == [tid]


async def test_dates_prefixes_precision_and_periods(client, uid):
    def enc(start, end=None):
        period = {"start": start} | ({"end": end} if end else {})
        return {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "identifier": [{"system": SYS, "value": f"enc-{uid}"}],
            "period": period,
        }

    march = await create(client, enc("2026-03-10T09:00:00+01:00", "2026-03-10T10:00:00+01:00"))
    span = await create(client, enc("2026-02-20", "2026-04-05"))
    open_end = await create(client, enc("2026-05-01T08:00:00Z"))
    mine = {"identifier": f"{SYS}|enc-{uid}"}

    async def q(*values):
        return await ids(client, "/fhir/Encounter", date=list(values), **mine)

    assert await q("2026-03") == [march]  # eq: the search range contains the period
    assert await q("2026") == sorted([march, span])  # the open period runs past 2026
    assert await q("2026-03-10") == [march]
    assert await q("ne2026-03") == sorted([span, open_end])
    assert await q("lt2026-03-01") == [span]  # starts before
    assert await q("gt2026-04-30") == [open_end]  # ends after (open end)
    assert await q("ge2026-04-01") == sorted([span, open_end])
    assert await q("le2026-03-01") == [span]
    assert await q("sa2026-04-30") == [open_end]  # starts after
    assert await q("eb2026-03-31") == [march]  # ends before
    assert march in await q("ap2026-03-10")
    # ge and le together: both the March visit and the longer stay qualify.
    assert await q("ge2026-03-01", "le2026-03-31") == sorted([march, span])
    assert await q("sa2026-03-01", "eb2026-03-31") == [march]
    # Instants and time zones: 09:00+01:00 is 08:00Z.
    assert await q("2026-03-10T08:00:00Z") == []
    assert await q("ge2026-03-10T08:00:00Z", "lt2026-03-10T08:30:00Z") == sorted([march, span])
    assert await q("eb2026-03-10T08:30:00Z") == []
    assert await q("sa2026-03-10T07:59:59Z") == sorted([march, open_end])


async def test_number_and_quantity(client, uid):
    def obs(value, unit="kg", code="kg", **extra):
        return {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": f"w{uid}"}]},
            "valueQuantity": {
                "value": value,
                "unit": unit,
                "system": "http://unitsofmeasure.org",
                "code": code,
            },
            **extra,
        }

    light = await create(client, obs(61.5))
    heavy = await create(client, obs(100))
    grams = await create(client, obs(100, "g", "g"))
    mine = {"code": f"w{uid}"}

    async def q(value):
        return await ids(client, "/fhir/Observation", **{"value-quantity": value}, **mine)

    assert await q("100") == sorted([heavy, grams])
    assert await q("100||kg") == [heavy]
    assert await q("100|http://unitsofmeasure.org|g") == [grams]
    assert await q("61.5") == [light]
    assert await q("61.46") == []  # 61.5 is not within 61.455..61.465
    assert await q("61") == []  # 61 covers 60.5..61.5, 61.5 is outside
    assert await q("gt61.5") == sorted([heavy, grams])
    assert await q("lt100||kg") == [light]
    assert await q("ge100|http://unitsofmeasure.org|kg") == [heavy]
    assert await q("le61.5") == [light]
    assert await q("ne100||kg") == [light]
    assert await q("ap95||kg") == [heavy]


async def test_number_parameter(client, uid):
    pid = await create(client, person(uid, "Charge", "C"))

    def charge(factor):
        return {
            "resourceType": "ChargeItem",
            "status": "billable",
            "code": {
                "coding": [
                    {"system": "https://relais.dev/fhir/CodeSystem/dintilhac", "code": "DSA"},
                    {"system": "https://relais.test/acts", "code": f"a{uid}"},
                ]
            },
            "subject": {"reference": f"Patient/{pid}"},
            "priceOverride": {"value": 100, "currency": "EUR"},
            "factorOverride": factor,
        }

    half = await create(client, charge(0.5))
    double = await create(client, charge(2))
    mine = {"code": f"a{uid}"}

    async def q(value):
        return await ids(client, "/fhir/ChargeItem", **{"factor-override": value}, **mine)

    assert await q("0.5") == [half]
    assert await q("2") == [double]
    assert await q("2.0") == [double]
    assert await q("0.50") == [half]
    assert await q("gt1") == [double]
    assert await q("le0.5") == [half]
    assert await q("ne2") == [half]
    assert await q("ap1.9") == [double]
    assert await q("0.5,2") == sorted([half, double])


async def test_quantity_ranges(client, uid):
    pid = await create(client, person(uid, "Onset", "O"))

    def condition(low, high):
        return {
            "resourceType": "Condition",
            "subject": {"reference": f"Patient/{pid}"},
            "code": {"coding": [{"system": "https://relais.test/c", "code": f"c{uid}"}]},
            "onsetRange": {
                "low": {"value": low, "system": "http://unitsofmeasure.org", "code": "a"},
                "high": {"value": high, "system": "http://unitsofmeasure.org", "code": "a"},
            },
        }

    young = await create(client, condition(20, 30))
    old = await create(client, condition(60, 70))
    mine = {"code": f"c{uid}"}
    assert await ids(client, "/fhir/Condition", **{"onset-age": "25"}, **mine) == [young]
    assert await ids(client, "/fhir/Condition", **{"onset-age": "gt50"}, **mine) == [old]
    assert await ids(client, "/fhir/Condition", **{"onset-age": "lt50||a"}, **mine) == [young]


async def test_uri_below_above(client, uid):
    base = f"https://relais.test/{uid}/fhir/ValueSet"
    vs = await create(
        client,
        {"resourceType": "ValueSet", "status": "active", "url": f"{base}/motifs", "name": "m"},
    )
    assert await ids(client, "/fhir/ValueSet", url=f"{base}/motifs") == [vs]
    assert await ids(client, "/fhir/ValueSet", url=f"{base}") == []
    assert await ids(client, "/fhir/ValueSet", **{"url:below": f"https://relais.test/{uid}/"}) == [
        vs
    ]
    above = f"{base}/motifs/v2/extra"
    assert await ids(client, "/fhir/ValueSet", **{"url:above": above}) == [vs]
    assert await ids(client, "/fhir/ValueSet", **{"url:above": f"https://relais.test/{uid}"}) == []


async def test_composite(client, uid):
    def bp(value):
        return {
            "resourceType": "Observation",
            "status": "final",
            "identifier": [{"system": SYS, "value": f"bp-{uid}"}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {
                "value": value,
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        }

    low = await create(client, bp(110))
    high = await create(client, bp(150))
    mine = {"identifier": f"{SYS}|bp-{uid}"}
    cvq = "code-value-quantity"
    assert await ids(
        client, "/fhir/Observation", **{cvq: "http://loinc.org|8480-6$gt140"}, **mine
    ) == [high]
    assert await ids(client, "/fhir/Observation", **{cvq: "8480-6$lt140"}, **mine) == [low]
    assert await ids(client, "/fhir/Observation", **{cvq: "8462-4$lt140"}, **mine) == []
    assert await ids(client, "/fhir/Observation", **{cvq: "8480-6$110||mm[Hg]"}, **mine) == [low]
    assert sorted(
        await ids(client, "/fhir/Observation", **{cvq: "8480-6$gt100,8480-6$lt50"}, **mine)
    ) == sorted([low, high])


async def test_common_parameters(client, uid):
    tagged = await create(
        client,
        person(
            uid,
            "Tag",
            "T",
            meta={
                "tag": [{"system": "https://relais.test/tags", "code": f"t{uid}"}],
                "profile": [f"https://relais.test/{uid}/StructureDefinition/p"],
            },
        ),
    )
    other = await create(client, person(uid, "Tag", "U"))
    assert await ids(client, "/fhir/Patient", _tag=f"https://relais.test/tags|t{uid}") == [tagged]
    assert await ids(
        client, "/fhir/Patient", _profile=f"https://relais.test/{uid}/StructureDefinition/p"
    ) == [tagged]
    assert await ids(client, "/fhir/Patient", _id=f"{tagged},{other}") == sorted([tagged, other])
    assert await ids(client, "/fhir/Patient", _id=f"{tagged},{other}", **{"_id:not": other}) == [
        tagged
    ]
    # _lastUpdated against the stored instant.
    r = await client.get(f"/fhir/Patient/{other}")
    stamp = r.json()["meta"]["lastUpdated"]
    got = await ids(client, "/fhir/Patient", _id=f"{tagged},{other}", _lastUpdated=f"ge{stamp}")
    assert got == [other]
    # The server labels every resource of a beneficiary: _security finds it by domain.
    r = await client.get(f"/fhir/Patient/{tagged}")
    labels = [s for s in r.json()["meta"].get("security", []) if "case-domain" in s["system"]]
    if labels:
        value = f"{labels[0]['system']}|{labels[0]['code']}"
        assert tagged in await ids(client, "/fhir/Patient", _security=value, _id=tagged)
    # System level: _id and _tag across types.
    r = await client.get("/fhir", params={"_tag": f"https://relais.test/tags|t{uid}"})
    assert [e["resource"]["id"] for e in r.json()["entry"] if e["search"]["mode"] == "match"] == [
        tagged
    ]
    r = await client.get("/fhir", params={"_id": tagged, "_type": "Patient,Goal"})
    assert r.json()["total"] == 1


async def test_relais_parameters(client, uid):
    pid = await create(client, person(uid, "Sinistre", "S"))
    claim_type = {
        "coding": [
            {"system": "https://relais.dev/fhir/CodeSystem/identifier-type", "code": "claim-number"}
        ]
    }
    case = await create(
        client,
        {
            "resourceType": "EpisodeOfCare",
            "status": "active",
            "patient": {"reference": f"Patient/{pid}"},
            "identifier": [
                {"type": claim_type, "system": "https://assureur.test", "value": f"SIN-{uid}"},
                {"system": "https://assureur.test", "value": f"AUTRE-{uid}"},
            ],
            "extension": [
                {
                    "url": "https://relais.dev/fhir/StructureDefinition/accident-date",
                    "valueDate": "2025-06-14",
                }
            ],
        },
    )
    assert await ids(client, "/fhir/EpisodeOfCare", **{"claim-number": f"SIN-{uid}"}) == [case]
    # Only identifiers typed claim-number count as claim numbers.
    assert await ids(client, "/fhir/EpisodeOfCare", **{"claim-number": f"AUTRE-{uid}"}) == []
    assert await ids(client, "/fhir/EpisodeOfCare", identifier=f"AUTRE-{uid}") == [case]
    mine = {"patient": pid}
    assert await ids(client, "/fhir/EpisodeOfCare", **{"accident-date": "2025-06"}, **mine) == [
        case
    ]
    assert await ids(client, "/fhir/EpisodeOfCare", **{"accident-date": "gt2025-07"}, **mine) == []
