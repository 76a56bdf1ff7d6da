"""Units: the same patient in any unit gives identical results; unknown units are clear errors."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b12kg.derive import recommend
from b12kg.errors import InvalidPatientData
from b12kg.report import reports
from conftest import EXAMPLES, SEED_AS_OF

SEED = (EXAMPLES / "seed-case.ttl").read_text()
PMOL_PER_PG = Decimal("0.738")  # the factor is data in the ontology; the test states it to build inputs


def with_b12(tmp: Path, name: str, value: Decimal, unit: str, code: str) -> Path:
    text = SEED.replace("b12:code loinc:2132-9 ;", f"b12:code loinc:{code} ;")
    text = text.replace("b12:value 292 ;", f"b12:value {value} ;").replace('b12:unit "pg/mL"', f'b12:unit "{unit}"')
    path = tmp / f"{name}.ttl"
    path.write_text(text)
    return path


def decision(path: Path) -> tuple:
    (doc,) = reports(recommend(path, as_of=SEED_AS_OF))
    return (
        doc["in_scope"],
        tuple(sorted(r["id"] for r in doc["not_covered_reasons"])),
        tuple((r["id"], r["status"], str(r.get("next_due")), str(r.get("window"))) for r in doc["recommendations"]),
        tuple(sorted(s["id"] for s in doc["assessment"]["states"])),
        tuple(sorted(m["id"] for m in doc["missing_data"])),
        doc["assessment"]["b12_pmol_per_l"],
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pg_per_ml=st.decimals(min_value=Decimal("20"), max_value=Decimal("1500"), places=1))
def test_b12_in_pg_per_ml_ng_per_l_and_pmol_per_l_gives_identical_results(tmp_path, pg_per_ml):
    pmol = pg_per_ml * PMOL_PER_PG
    a = decision(with_b12(tmp_path, "pg", pg_per_ml, "pg/mL", "2132-9"))
    b = decision(with_b12(tmp_path, "ng", pg_per_ml, "ng/L", "2132-9"))
    c = decision(with_b12(tmp_path, "pmol", pmol, "pmol/L", "14685-2"))
    assert a == b == c


@pytest.mark.parametrize("pg_per_ml, below_metabolic", [("349.5", True), ("349.6", False), ("350", False)])
def test_boundary_350_pg_per_ml_is_258_pmol_per_l(tmp_path, pg_per_ml, below_metabolic):
    (doc,) = reports(recommend(with_b12(tmp_path, "b", Decimal(pg_per_ml), "pg/mL", "2132-9"), as_of=SEED_AS_OF))
    states = {s["id"] for s in doc["assessment"]["states"]}
    assert ("PatientWithB12BelowMetabolicThreshold" in states) is below_metabolic


def test_folate_in_ng_per_ml_and_nmol_per_l_is_the_same(tmp_path):
    base = (EXAMPLES / "low-folate.ttl").read_text()
    nmol = tmp_path / "folate-nmol.ttl"
    nmol.write_text(base.replace("b12:code loinc:2284-8 ; b12:value 2.1 ; b12:unit \"ng/mL\"",
                                 "b12:code loinc:14732-2 ; b12:value 4.7586 ; b12:unit \"nmol/L\""))
    (a,) = reports(recommend(EXAMPLES / "low-folate.ttl", as_of=SEED_AS_OF))
    (b,) = reports(recommend(nmol, as_of=SEED_AS_OF))
    assert a["assessment"]["results"]["folate"]["canonical"] == b["assessment"]["results"]["folate"]["canonical"]
    assert [r["id"] for r in a["recommendations"]] == [r["id"] for r in b["recommendations"]]


@pytest.mark.parametrize("unit", ["mg", "[IU]/L", "pg/ml", "umol/L"])
def test_unknown_or_incompatible_b12_unit_is_an_error_naming_value_and_unit(tmp_path, unit):
    path = with_b12(tmp_path, "bad", Decimal(292), unit, "2132-9")
    with pytest.raises(InvalidPatientData) as info:
        recommend(path, as_of=SEED_AS_OF)
    message = info.value.message
    assert f"unknown unit {unit!r}" in message and "value 292" in message and "serum vitamin B12" in message
    assert "pg/mL" in message  # the known units are listed
