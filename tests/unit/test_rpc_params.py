"""read_params: every bad field named at once, unknown params refused, types strict."""

from __future__ import annotations

import pytest

from domain.errors import InvalidSpec
from interfaces.rpc.params import (
    CopyParams,
    ExecuteParams,
    ListParams,
    ReplayParams,
    TaskRef,
    instant,
    read_params,
)


def fields_of(raw: object, cls: type) -> dict[str, str]:
    with pytest.raises(InvalidSpec) as caught:
        read_params(raw, cls)
    return {f.field: f.reason for f in caught.value.fields}


def test_every_bad_field_is_named() -> None:
    bad = fields_of({"limit": "10", "offset": -1, "status": "done", "extra": 1}, ListParams)
    assert set(bad) == {"limit", "offset", "status", "extra"}
    assert bad["extra"] == "unknown parameter"
    assert "str" in bad["limit"]


def test_missing_required_and_wrong_container() -> None:
    assert fields_of({}, TaskRef) == {"task_id": "task_id is required"}
    assert fields_of([1, 2], TaskRef) == {"params": "expected an object, got an array"}
    assert fields_of("x", TaskRef) == {"params": "expected an object, got a string"}


def test_no_coercion_of_booleans_and_numbers() -> None:
    assert set(fields_of({"task_id": 5}, TaskRef)) == {"task_id"}
    assert set(fields_of({"limit": True}, ListParams)) == {"limit"}
    assert set(fields_of({"task_id": "a", "save": "yes"}, CopyParams)) == {"save"}


def test_nested_fields_are_named_by_path() -> None:
    bad = fields_of(
        {"task_id": "a", "webhook_config": {"url": "ftp://x", "max_retries": 99}}, ExecuteParams
    )
    assert set(bad) == {"webhook_config.url", "webhook_config.max_retries"}


def test_defaults_and_valid_values() -> None:
    got = read_params(None, ListParams)
    assert (got.root_only, got.limit, got.offset) == (True, 100, 0)
    assert read_params({"task_id": "a", "version": 3}, ReplayParams).version == 3


def test_instant_reads_iso_times_and_names_the_field() -> None:
    assert instant("2026-01-31T12:00:00Z", "at").utcoffset() is not None
    assert instant("2026-01-31T12:00:00", "at").tzinfo is not None
    with pytest.raises(InvalidSpec) as caught:
        instant("yesterday", "at")
    assert caught.value.fields[0].field == "at"
