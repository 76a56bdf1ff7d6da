"""Incremental derive on the embedded store: after a load replaces a dataset, derive at the same settings
evaluates only the patients whose input changed (by a digest per patient) and keeps the others; the
result equals a full derive of the same data, always. Anything else derive depends on (the evaluation
date, the knowledge base, the code, the options) makes it evaluate everyone."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path

import pyoxigraph as ox
import pytest

from b12kg import cohort
from b12kg.errors import ExitCode
from b12kg.store import GRAPH_DERIVED, STATE_FILE, DeriveState, EmbeddedStore, RemoteStore
from b12kg.synth import generate
from conftest import SEED_AS_OF, cli

PER_FILE = 40
B12 = "https://w3id.org/b12kg/ontology#"


def cohort_files(folder: Path, files: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        path = folder / f"part-{i}.nt"
        with path.open("w", encoding="utf-8") as out:
            generate(out, patients=PER_FILE, seed=7 + i, as_of=SEED_AS_OF, base=f"https://example.org/inc/{i}/")
        paths.append(path)
    return paths


def edited(path: Path, target: Path, edit) -> Path:
    """``path`` with ``edit(lines)`` applied, written as ``target`` (same file name: the same dataset)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text(encoding="utf-8").splitlines()
    target.write_text("\n".join(edit(lines)) + "\n", encoding="utf-8")
    return target


def patient_of(line: str) -> str | None:
    m = re.match(r"<(https://example.org/inc/\d+/p\d+)[->]", line)
    return m.group(1) if m else None


def derived(store: EmbeddedStore) -> set[ox.Triple]:
    return {q.triple for q in store.store.quads_for_pattern(None, None, None, ox.NamedNode(GRAPH_DERIVED))}


def full_derive(folder: Path, files: list[Path], **options) -> tuple[set[ox.Triple], DeriveState]:
    """The derived graph and record of a new store with ``files`` loaded and every patient derived."""
    with EmbeddedStore(folder) as store:
        cohort.load(store, files)
        result = cohort.derive(store, as_of=SEED_AS_OF, workers=1, **options)
        assert result.full and result.kept == 0
        return derived(store), store.derive_state()


@pytest.fixture
def files(tmp_path) -> list[Path]:
    return cohort_files(tmp_path / "data")


@pytest.fixture
def db(tmp_path, files) -> Path:
    path = tmp_path / "db"
    with EmbeddedStore(path) as store:
        cohort.load(store, files)
        result = cohort.derive(store, as_of=SEED_AS_OF, workers=1)
        assert result.full and result.evaluated == result.patients == 3 * PER_FILE and not result.problems
    return path


def test_after_a_load_derive_evaluates_only_the_changed_patients_and_equals_a_full_derive(tmp_path, files, db):
    changed_values, removed = set(), None

    def edit(lines):
        nonlocal removed
        out = []
        for line in lines:
            who = patient_of(line)
            if removed is None and who and who.endswith("/p5"):
                removed = who
            if who == removed:
                continue  # a patient leaves the dataset
            m = re.search(r'#value> "([0-9.]+)"', line)
            if m and who and len(changed_values | {who}) <= 3:
                changed_values.add(who)
                line = line.replace(f'"{m.group(1)}"', '"150.5"')
            out.append(line)
        base = "https://example.org/inc/1/p-new"  # a patient joins it
        out += [f"<{base}> <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <{B12}Patient> .",
                f'<{base}> <{B12}birthDate> "1950-01-01"^^<http://www.w3.org/2001/XMLSchema#date> .']
        return out

    new = edited(files[1], tmp_path / "new" / files[1].name, edit)
    assert len(changed_values) == 3 and removed
    changed: list[str] = []
    with EmbeddedStore(db) as store:
        cohort.load(store, [new], changed=changed)
        assert sorted(changed) == sorted(changed_values | {removed})  # their results were deleted
        result = cohort.derive(store, as_of=SEED_AS_OF, workers=1)
        assert result.full == "" and result.problems == []
        assert result.patients == 3 * PER_FILE  # one left, one came
        assert result.kept == 3 * PER_FILE - 1 - 3 and result.patients - result.kept == 4  # 3 changed, 1 new
        incremental, record = derived(store), store.derive_state()
    expected, expected_record = full_derive(tmp_path / "full", [files[0], new, files[2]])
    assert incremental == expected
    assert record.patients == expected_record.patients and record.settings == expected_record.settings
    assert not any(removed in str(t) for t in incremental)


def test_a_load_that_changes_nothing_keeps_every_result(tmp_path, files, db):
    copy = tmp_path / "again" / files[0].name
    copy.parent.mkdir()
    shutil.copy(files[0], copy)
    before = None
    with EmbeddedStore(db) as store:
        before = derived(store)
        changed: list[str] = []
        cohort.load(store, [copy], changed=changed)
        assert changed == [] and derived(store) == before
        result = cohort.derive(store, as_of=SEED_AS_OF, workers=1)
        assert result.full == "" and result.kept == result.evaluated == result.patients == 3 * PER_FILE
        assert derived(store) == before


def test_data_of_one_patient_in_two_datasets(tmp_path, files, db):
    """A lab result in a dataset of its own, about a patient of another dataset: replacing that dataset
    changes the patient's input, so its results are deleted and derived again."""
    patient = "https://example.org/inc/2/p3"
    result_iri = f"{patient}-extra-b12"
    extra = tmp_path / "extra" / "extra.nt"
    extra.parent.mkdir()

    def write(value: str) -> Path:
        extra.write_text("\n".join([
            f"<{patient}> <{B12}hasLabResult> <{result_iri}> .",
            f"<{result_iri}> <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <{B12}LabResult> .",
            f"<{result_iri}> <{B12}code> <http://loinc.org/rdf#14685-2> .",
            f'<{result_iri}> <{B12}value> "{value}"^^<http://www.w3.org/2001/XMLSchema#decimal> .',
            f'<{result_iri}> <{B12}unit> "pg/mL" .',
            f'<{result_iri}> <{B12}effectiveDate> "{SEED_AS_OF - timedelta(days=1)}"^^<http://www.w3.org/2001/XMLSchema#date> .',
        ]) + "\n")
        return extra

    with EmbeddedStore(db) as store:
        for value in ("120.0", "650.0"):
            changed: list[str] = []
            cohort.load(store, [write(value)], changed=changed)
            assert changed == [patient]
            result = cohort.derive(store, as_of=SEED_AS_OF, workers=1)
            assert result.full == "" and result.patients - result.kept == 1
        incremental = derived(store)
    expected, _ = full_derive(tmp_path / "full", [*files, extra])
    assert incremental == expected


@pytest.mark.parametrize("change, reason", [
    ({"as_of": SEED_AS_OF + timedelta(days=1)}, "the evaluation date (--as-of)"),
    ({"shacl": False}, "--shacl/--no-shacl"),
    ({"full": True}, "--full"),
])
def test_other_settings_evaluate_everyone(db, change, reason):
    with EmbeddedStore(db) as store:
        options = {"as_of": SEED_AS_OF, "workers": 1, **change}
        result = cohort.derive(store, **options)
        assert reason in result.full and result.kept == 0 and result.evaluated == 3 * PER_FILE
        again = cohort.derive(store, **{**options, "full": False})
        assert again.full == "" and again.kept == 3 * PER_FILE  # recorded with the new settings


def test_a_changed_knowledge_base_evaluates_everyone(db, kb_copy):
    shape = next(kb_copy.shapes_dir.glob("*.ttl"))
    shape.write_text(shape.read_text(encoding="utf-8") + "\n# an edit\n", encoding="utf-8")
    with EmbeddedStore(db) as store:
        result = cohort.derive(store, as_of=SEED_AS_OF, kb=kb_copy, workers=1)
        assert "the knowledge base" in result.full and result.kept == 0


def test_patients_left_out_for_invalid_data_are_evaluated_and_reported_every_time(tmp_path, files, db):
    def edit(lines):  # one patient's B12 result in a unit b12kg does not know
        first = next(i for i, line in enumerate(lines) if '#unit> "pg/mL"' in line)
        lines[first] = lines[first].replace('"pg/mL"', '"furlongs"')
        return lines

    bad = edited(files[0], tmp_path / "bad" / files[0].name, edit)
    with EmbeddedStore(db) as store:
        cohort.load(store, [bad])
        for _ in range(2):
            result = cohort.derive(store, as_of=SEED_AS_OF, workers=1)
            assert result.full == "" and len(result.problems) == 1 and "furlongs" in result.problems[0]
            assert result.patients - result.kept == 1 and result.evaluated == result.patients - 1
        record = store.derive_state()
        assert len(record.patients) == result.evaluated


def test_a_load_that_changes_most_patients_keeps_no_derived_graph(tmp_path, files, db):
    def edit(lines):
        return [re.sub(r'#value> "([0-9.]+)"', '#value> "150.5"', line) for line in lines]

    new = [edited(f, tmp_path / "new" / f.name, edit) for f in files[:2]]
    with EmbeddedStore(db) as store:
        cohort.load(store, new)
        assert not store.has_graph(GRAPH_DERIVED) and store.derive_state() is None
        assert "no derived results" in cohort.derive(store, as_of=SEED_AS_OF, workers=1).full


def test_a_derived_graph_without_a_record_is_derived_again_whole(db):
    with EmbeddedStore(db) as store:
        current = store.path / store.head()["current"]
    (current / STATE_FILE).unlink()
    with EmbeddedStore(db) as store:
        assert "no derived results with a derive record" in cohort.derive(store, as_of=SEED_AS_OF, workers=1).full
        assert store.derive_state() is not None  # recorded again


def test_a_damaged_record_is_ignored(db):
    with EmbeddedStore(db) as store:
        current = store.path / store.head()["current"]
    (current / STATE_FILE).write_text('{"format": 1, "settings": {}}\nhttps://example.org/p\tabc')  # cut short
    with EmbeddedStore(db) as store:
        assert store.derive_state() is None
        assert cohort.derive(store, as_of=SEED_AS_OF, workers=1).full


def test_a_failed_incremental_derive_changes_nothing(tmp_path, files, db, monkeypatch):
    new = edited(files[0], tmp_path / "new" / files[0].name,
                 lambda lines: [line.replace('#value> "', '#value> "1', 1) if i < 40 else line
                                for i, line in enumerate(lines)])
    with EmbeddedStore(db) as store:
        cohort.load(store, [new])
        head, record, before = store.head(), store.derive_state(), derived(store)
        import b12kg.store as module

        def broken(self, graph, data):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(module.GenerationWriter, "add_nt", broken)
        with pytest.raises(module.StoreError, match="No space left on device"):
            cohort.derive(store, as_of=SEED_AS_OF, workers=1)
        assert store.head() == head and store.derive_state() == record and derived(store) == before
        assert store.generations() == sorted({head["base"], head["current"]})


def test_a_remote_store_always_evaluates_everyone():
    remote = RemoteStore("http://127.0.0.1:9/sparql")  # not contacted
    assert cohort._why_full(remote, None, {}, False) == "a remote store keeps no derive record"


def test_the_commands_say_what_they_kept(tmp_path, files):
    db = str(tmp_path / "db")
    assert cli("load", *map(str, files), "--store", db).returncode == 0
    first = cli("derive", "--store", db, "--as-of", SEED_AS_OF.isoformat())
    assert first.returncode == 0 and "evaluated every patient (no derived results" in first.stderr, first.stderr
    new = edited(files[2], tmp_path / "new" / files[2].name,
                 lambda lines: [line for line in lines if patient_of(line) != "https://example.org/inc/2/p0"])
    load = cli("load", str(new), "--store", db)
    assert load.returncode == 0 and "the derived results of 1 patient(s) whose data this load changed" in load.stderr
    again = cli("derive", "--store", db, "--as-of", SEED_AS_OF.isoformat())
    assert again.returncode == 0, again.stderr
    assert (f"evaluated 0 patient(s) without results; kept the results of {3 * PER_FILE - 1} whose data and "
            "settings had not changed since the last derive") in again.stderr
    full = cli("derive", "--store", db, "--as-of", SEED_AS_OF.isoformat(), "--full")
    assert full.returncode == 0 and "evaluated every patient (--full)" in full.stderr
    bad = cli("derive", "--store", db, "--full", "--as-of", "not-a-date")
    assert bad.returncode == ExitCode.USAGE and len(bad.stderr.strip().splitlines()) == 1
