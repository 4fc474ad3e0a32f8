"""Damaged copies of real files (bit flips, truncation, inserted bytes, zeroed runs, random bodies behind a valid
header; edited cards and configs) never escape as an untyped exception, a half-read or non-finite array, or a hang:
each read gives a result or a typed error naming the file. benchmarks/fuzz.py runs 10,000 per format."""

from functools import partial

import pytest

from medattn.fuzz import is_defect, mutate, plan, run_mutants
from medattn.fuzz_targets import NAMES, seed_counts, targets

MUTANTS = 200  # per format, seeded: the same mutants on every run
TIME_LIMIT = 10.0  # seconds per read; the slowest real read here takes well under one


@pytest.mark.parametrize("name", NAMES)
def test_damaged_files_give_a_result_or_a_typed_error_naming_the_file(name, shared_data):
    defects = []
    counts = run_mutants(
        partial(targets, data=shared_data, names=(name,)),
        plan(seed_counts(shared_data, [name]), MUTANTS, seed=16),
        time_limit=TIME_LIMIT,
        on_result=lambda job, damage, outcome, detail: (
            defects.append((job, damage, outcome, detail)) if is_defect(outcome) else None
        ),
    )
    assert not defects, defects[:3]
    assert counts[name, "refused"] > MUTANTS // 10  # the damage reached the reader, which said so


# Mutants that once escaped from pydicom untyped (struct.error, BytesLengthException): (target, seed file, mutant seed).
ESCAPED_BEFORE = [("dicom", 6, 61579942595334), ("dicom", 6, 17180643643493)]


def test_mutants_that_once_escaped_are_refused(shared_data):
    counts = run_mutants(partial(targets, data=shared_data, names=("dicom",)), ESCAPED_BEFORE, time_limit=TIME_LIMIT)
    assert counts["dicom", "refused"] == len(ESCAPED_BEFORE), counts


def test_mutants_are_reproducible_and_damaged():
    import random

    data = bytes(range(256)) * 8
    first = [mutate(data, "x.dcm", random.Random(seed)) for seed in range(20)]
    assert first == [mutate(data, "x.dcm", random.Random(seed)) for seed in range(20)]
    assert all(damaged != data for _, damaged in first)
    assert {damage for damage, _ in first} == {"bitflip", "truncate", "insert", "zero", "random_body"}


def test_a_hang_is_caught_by_the_time_limit(tmp_path, shared_data):
    counts = run_mutants(partial(_sleepy, data=shared_data), [("png", 0, 1)], time_limit=0.5)
    assert counts["png", "hang"] == 1


def _sleepy(workdir, *, data):
    import time

    found = targets(workdir, data=data, names=("png",))
    found["png"].read = lambda path: time.sleep(30)
    return found
