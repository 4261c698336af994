"""A2A tasks and push configs on the real store (SQLite and PostgreSQL): owner scoping, an
admin who sees all, ListTasks in SQL with the SDK's order and cursors (checked page by page
against the SDK's in-memory store), and data that survives a new engine."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from a2a.server.context import ServerCallContext
from a2a.server.tasks import InMemoryTaskStore
from a2a.types.a2a_pb2 import (
    Artifact,
    AuthenticationInfo,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    Role,
    Task,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatus,
)
from a2a.utils.errors import InvalidParamsError
from a2a.utils.task import encode_page_token

from application.config import ConfigError, Settings
from interfaces.a2a.service import NamedUser
from interfaces.a2a.store import (
    SqlPushConfigStore,
    SqlTaskStore,
    a2a_store_url,
    create_a2a_engine,
    is_admin,
    owner_of,
)

R = TypeVar("R")
S = TaskState
BASE_S = 1_780_000_000  # seconds since the epoch: a status timestamp of this decade


def ctx(name: str | None = None, *, admin: bool = False) -> ServerCallContext:
    """A caller: `name` (None: unauthenticated), an admin when `admin`."""
    context = ServerCallContext() if name is None else ServerCallContext(user=NamedUser(name))
    if admin:
        context.state["admin"] = True
    return context


ALICE, BOB, ROOT, ANON = ctx("alice"), ctx("bob"), ctx("root", admin=True), ctx()


def run(coro: Awaitable[R]) -> R:
    async def main() -> R:
        return await coro

    return asyncio.run(main())


def make_task(
    task_id: str,
    state: int = S.TASK_STATE_WORKING,
    *,
    context_id: str = "ctx-1",
    ts_ns: int | None = BASE_S * 10**9,
) -> Task:
    task = Task(id=task_id, context_id=context_id, status=TaskStatus(state=state))
    if ts_ns is not None:
        task.status.timestamp.FromNanoseconds(ts_ns)
    return task


def rich_task(task_id: str) -> Task:
    """A task with every part filled in: status message, artifacts, history, metadata."""
    task = make_task(task_id, S.TASK_STATE_INPUT_REQUIRED, ts_ns=BASE_S * 10**9 + 123_456_789)
    question = Message(message_id="m3", role=Role.ROLE_AGENT, parts=[Part(text="which one?")])
    task.status.message.CopyFrom(question)
    task.artifacts.append(Artifact(artifact_id="a1", name="result", parts=[Part(text="42")]))
    data = task.artifacts.add(artifact_id="a2")
    data.parts.add().data.struct_value.update({"rows": [1, 2], "ok": True})
    task.history.append(Message(message_id="m1", role=Role.ROLE_USER, parts=[Part(text="hi")]))
    task.history.append(Message(message_id="m2", role=Role.ROLE_AGENT, parts=[Part(text="yo")]))
    task.metadata.update({"tree": "t-1", "n": 3, "nested": {"k": ["v"]}})
    return task


@pytest.fixture
def engine(store_settings: Settings) -> Iterator[sa.Engine]:
    engine = create_a2a_engine(store_settings)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def store(engine: sa.Engine) -> SqlTaskStore:
    return SqlTaskStore(engine)


@pytest.fixture
def configs(engine: sa.Engine) -> SqlPushConfigStore:
    return SqlPushConfigStore(engine)


def save_all(store: SqlTaskStore, owned: list[tuple[Task, ServerCallContext]]) -> None:
    async def go() -> None:
        for task, context in owned:
            await store.save(task, context)

    run(go())


# --- identity


def test_owner_and_admin_come_from_the_context() -> None:
    assert owner_of(ALICE) == "alice"
    assert owner_of(ANON) == ""
    assert not is_admin(ALICE)
    assert is_admin(ROOT)
    assert owner_of(ROOT) == "root"


# --- tasks


def test_round_trip_keeps_every_part_and_returns_copies(store: SqlTaskStore) -> None:
    task = rich_task("t-1")
    before = Task()
    before.CopyFrom(task)
    run(store.save(task, ALICE))
    assert task == before  # the task passed in is untouched

    got = run(store.get("t-1", ALICE))
    assert got == task
    assert got is not task
    assert got is not None
    got.history.add(message_id="mutated")
    got.metadata["n"] = 99
    assert run(store.get("t-1", ALICE)) == task  # a fresh copy each time


def test_save_replaces_the_task(store: SqlTaskStore) -> None:
    run(store.save(make_task("t-1", S.TASK_STATE_SUBMITTED), ALICE))
    done = rich_task("t-1")
    done.status.state = S.TASK_STATE_COMPLETED
    run(store.save(done, ALICE))

    assert run(store.get("t-1", ALICE)) == done
    page = run(store.list(ListTasksRequest(), ALICE))
    assert list(page.tasks) == [done]
    assert page.total_size == 1
    completed = run(store.list(ListTasksRequest(status=S.TASK_STATE_COMPLETED), ALICE))
    assert [t.id for t in completed.tasks] == ["t-1"]  # the indexed columns follow the task
    assert run(store.list(ListTasksRequest(status=S.TASK_STATE_SUBMITTED), ALICE)).total_size == 0


def test_other_owners_tasks_are_invisible(store: SqlTaskStore) -> None:
    mine = rich_task("t-1")
    run(store.save(mine, ALICE))

    for other in (BOB, ANON):
        assert run(store.get("t-1", other)) is None
        assert run(store.list(ListTasksRequest(), other)).total_size == 0
        run(store.delete("t-1", other))  # a no-op
        hijack = make_task("t-1", S.TASK_STATE_CANCELED, context_id="theirs")
        run(store.save(hijack, other))  # ignored: the task stays alice's, unchanged
        assert run(store.get("t-1", other)) is None

    assert run(store.get("t-1", ALICE)) == mine
    assert [t.id for t in run(store.list(ListTasksRequest(), ALICE)).tasks] == ["t-1"]


def test_unauthenticated_callers_share_the_empty_owner(store: SqlTaskStore) -> None:
    run(store.save(make_task("anon-1"), ANON))
    assert run(store.get("anon-1", ctx())) == make_task("anon-1")
    assert run(store.get("anon-1", ALICE)) is None


def test_admin_sees_updates_and_deletes_every_owners_tasks(store: SqlTaskStore) -> None:
    save_all(store, [(make_task("a-1"), ALICE), (make_task("b-1"), BOB)])

    listed = run(store.list(ListTasksRequest(), ROOT))
    assert sorted(t.id for t in listed.tasks) == ["a-1", "b-1"]
    assert listed.total_size == 2
    assert run(store.get("a-1", ROOT)) == make_task("a-1")

    updated = make_task("a-1", S.TASK_STATE_COMPLETED)
    run(store.save(updated, ROOT))
    assert run(store.get("a-1", ALICE)) == updated  # still alice's
    assert run(store.list(ListTasksRequest(), ctx("root"))).total_size == 0  # not root's now

    run(store.delete("b-1", ROOT))
    assert run(store.get("b-1", BOB)) is None
    assert [t.id for t in run(store.list(ListTasksRequest(), ROOT)).tasks] == ["a-1"]


def test_delete(store: SqlTaskStore) -> None:
    save_all(store, [(make_task("t-1"), ALICE), (make_task("t-2"), ALICE)])
    run(store.delete("t-1", ALICE))
    run(store.delete("t-1", ALICE))  # again: a no-op
    run(store.delete("never", ALICE))
    assert run(store.get("t-1", ALICE)) is None
    assert run(store.get("t-2", ALICE)) == make_task("t-2")
    run(store.save(make_task("t-1", S.TASK_STATE_SUBMITTED), BOB))  # the id is free again
    assert run(store.get("t-1", BOB)) == make_task("t-1", S.TASK_STATE_SUBMITTED)


# --- ListTasks, against the SDK's in-memory store


def listing_tasks() -> list[tuple[Task, ServerCallContext]]:
    """Alice's and Bob's tasks: two contexts, several states, equal timestamps (ties go by
    id), tasks without a timestamp (last), and timestamps beyond the 64-bit nanosecond range."""
    rng = random.Random(7)
    states = [S.TASK_STATE_SUBMITTED, S.TASK_STATE_WORKING, S.TASK_STATE_COMPLETED]
    owned: list[tuple[Task, ServerCallContext]] = []
    for i in range(37):
        ts: int | None = (BASE_S + rng.randrange(8)) * 10**9 + rng.choice([0, 500])
        if i % 9 == 4:
            ts = None
        task = make_task(
            f"t-{rng.randrange(1000):03d}-{i:02d}",
            rng.choice(states),
            context_id=rng.choice(["ctx-a", "ctx-b"]),
            ts_ns=ts,
        )
        owned.append((task, ALICE if i % 5 else BOB))
    owned.append((make_task("far-future", ts_ns=253_402_300_799 * 10**9), ALICE))  # 9999
    owned.append((make_task("far-past", ts_ns=-62_135_596_800 * 10**9), ALICE))  # year 1
    return owned


LISTINGS = [
    ListTasksRequest(),
    ListTasksRequest(page_size=1),
    ListTasksRequest(page_size=4),
    ListTasksRequest(page_size=7, context_id="ctx-a"),
    ListTasksRequest(page_size=3, status=S.TASK_STATE_WORKING),
    ListTasksRequest(page_size=3, context_id="ctx-b", status=S.TASK_STATE_COMPLETED),
    ListTasksRequest(page_size=5, context_id="no-such-context"),
]


def with_timestamp_after(request: ListTasksRequest, seconds: int) -> ListTasksRequest:
    after = ListTasksRequest()
    after.CopyFrom(request)
    after.status_timestamp_after.FromSeconds(seconds)
    return after


def every_page(
    list_tasks: Callable[[ListTasksRequest], Awaitable[ListTasksResponse]],
    request: ListTasksRequest,
) -> list[ListTasksResponse]:
    """Follow next_page_token to the end."""

    async def go() -> list[ListTasksResponse]:
        pages = [await list_tasks(request)]
        while pages[-1].next_page_token:
            following = ListTasksRequest()
            following.CopyFrom(request)
            following.page_token = pages[-1].next_page_token
            pages.append(await list_tasks(following))
            assert len(pages) < 100
        return pages

    return run(go())


@pytest.mark.parametrize(
    "request_", [*LISTINGS, *(with_timestamp_after(r, BASE_S + 4) for r in LISTINGS)]
)
@pytest.mark.parametrize("caller", ["alice", "admin"])
def test_listing_matches_the_sdk_in_memory_store(
    store: SqlTaskStore, request_: ListTasksRequest, caller: str
) -> None:
    owned = listing_tasks()
    save_all(store, owned)
    reference = InMemoryTaskStore()
    for task, context in owned:
        run(reference.save(task, context))
    context = ALICE if caller == "alice" else ROOT

    async def expected_list(request: ListTasksRequest) -> ListTasksResponse:
        if caller == "alice":
            return await reference.list(request, ALICE)
        alices, bobs = await reference.list(request, ALICE), await reference.list(request, BOB)
        return merged(request, [*alices.tasks, *bobs.tasks])

    pages = every_page(lambda r: store.list(r, context), request_)
    expected = every_page(expected_list, request_) if caller == "alice" else None
    if expected is not None:
        assert pages == expected  # tasks, total_size, page_size and every token
    listed = [t for page in pages for t in page.tasks]
    whole = run(expected_list(unpaged(request_)))
    assert listed == list(whole.tasks)
    assert all(page.total_size == len(listed) for page in pages)
    assert len({t.id for t in listed}) == len(listed)
    size = request_.page_size or 50
    assert all(page.page_size == size for page in pages)
    assert all(len(page.tasks) == size for page in pages[:-1])
    assert not pages[-1].next_page_token


def unpaged(request: ListTasksRequest) -> ListTasksRequest:
    whole = ListTasksRequest()
    whole.CopyFrom(request)
    whole.page_size = 100
    return whole


def merged(request: ListTasksRequest, tasks: list[Task]) -> ListTasksResponse:
    """Both owners' tasks in the SDK's order (for the admin, whom the SDK does not know)."""

    def key(task: Task) -> tuple[bool, int, str]:
        has = task.status.HasField("timestamp")
        return (has, task.status.timestamp.ToNanoseconds() if has else 0, task.id)

    return ListTasksResponse(tasks=sorted(tasks, key=key, reverse=True), total_size=len(tasks))


def test_ordering_newest_status_first_then_id(store: SqlTaskStore) -> None:
    ns = BASE_S * 10**9
    save_all(
        store,
        [
            (make_task("b", ts_ns=ns), ALICE),
            (make_task("a", ts_ns=ns), ALICE),
            (make_task("c", ts_ns=ns - 1), ALICE),
            (make_task("z", ts_ns=None), ALICE),
            (make_task("y", ts_ns=None), ALICE),
            (make_task("d", ts_ns=ns + 1), ALICE),
            (make_task("B", ts_ns=ns), ALICE),  # code-point order: "B" < "a"
        ],
    )
    page = run(store.list(ListTasksRequest(), ALICE))
    assert [t.id for t in page.tasks] == ["d", "b", "a", "B", "c", "z", "y"]
    after = ListTasksRequest()
    after.status_timestamp_after.FromNanoseconds(ns)
    assert [t.id for t in run(store.list(after, ALICE)).tasks] == ["d", "b", "a", "B"]
    after.status_timestamp_after.FromSeconds(-62_135_596_800)  # year 1: every timestamp
    assert [t.id for t in run(store.list(after, ALICE)).tasks] == ["d", "b", "a", "B", "c"]
    after.status_timestamp_after.FromSeconds(253_402_300_799)  # 9999: none
    assert run(store.list(after, ALICE)).total_size == 0


def test_default_page_size(store: SqlTaskStore) -> None:
    save_all(store, [(make_task(f"t-{i:02d}", ts_ns=i * 10**9), ALICE) for i in range(51)])
    first = run(store.list(ListTasksRequest(), ALICE))
    assert (len(first.tasks), first.page_size, first.total_size) == (50, 50, 51)
    assert first.tasks[0].id == "t-50"
    rest = run(store.list(ListTasksRequest(page_token=first.next_page_token), ALICE))
    assert [t.id for t in rest.tasks] == ["t-00"]
    assert not rest.next_page_token


def test_a_page_token_stays_valid_when_its_task_changes(store: SqlTaskStore) -> None:
    save_all(store, [(make_task(f"t-{i}", ts_ns=i * 10**9), ALICE) for i in range(1, 6)])
    first = run(store.list(ListTasksRequest(page_size=2), ALICE))
    assert [t.id for t in first.tasks] == ["t-5", "t-4"]
    run(store.delete("t-4", ALICE))
    rest = run(store.list(ListTasksRequest(page_token=first.next_page_token), ALICE))
    assert [t.id for t in rest.tasks] == ["t-3", "t-2", "t-1"]


@pytest.mark.parametrize(
    "token",
    ["!!not base64!!", "bm90IGpzb24", "eyJ0cyI6MX0", encode_page_token("t-1")],
    ids=["garbage", "not-json", "no-id", "legacy"],
)
def test_a_bad_page_token_is_invalid_params(store: SqlTaskStore, token: str) -> None:
    run(store.save(make_task("t-1"), ALICE))
    with pytest.raises(InvalidParamsError, match="page_token"):
        run(store.list(ListTasksRequest(page_token=token), ALICE))


def test_unfinished_lists_every_owners_submitted_and_working_tasks(store: SqlTaskStore) -> None:
    save_all(
        store,
        [
            (make_task("a-sub", S.TASK_STATE_SUBMITTED), ALICE),
            (make_task("a-work", S.TASK_STATE_WORKING), ALICE),
            (make_task("a-done", S.TASK_STATE_COMPLETED), ALICE),
            (make_task("a-ask", S.TASK_STATE_INPUT_REQUIRED), ALICE),
            (make_task("b-work", S.TASK_STATE_WORKING), BOB),
            (make_task("b-fail", S.TASK_STATE_FAILED), BOB),
            (make_task("n-sub", S.TASK_STATE_SUBMITTED), ANON),
        ],
    )
    run(store.save(make_task("a-work", S.TASK_STATE_CANCELED), ALICE))
    found = {(task.id, owner): task for task, owner in run(store.unfinished())}
    assert set(found) == {("a-sub", "alice"), ("b-work", "bob"), ("n-sub", "")}
    assert found["b-work", "bob"] == make_task("b-work", S.TASK_STATE_WORKING)


def test_blocking_calls_run_through_io(engine: sa.Engine) -> None:
    calls: list[str] = []

    async def io(func: Callable[..., R], *args: Any) -> R:
        calls.append(func.__name__)
        return await asyncio.to_thread(func, *args)

    store = SqlTaskStore(engine, io)
    run(store.save(make_task("t-1"), ALICE))
    assert run(store.get("t-1", ALICE)) == make_task("t-1")
    assert calls == ["_save", "_get"]


# --- push-notification configs


def push_config(
    config_id: str = "", url: str = "https://hooks.example/a2a"
) -> TaskPushNotificationConfig:
    return TaskPushNotificationConfig(
        id=config_id,
        url=url,
        token="tok",
        authentication=AuthenticationInfo(scheme="Bearer", credentials="secret"),
    )


def test_push_configs_set_get_replace_delete(configs: SqlPushConfigStore) -> None:
    given = push_config("")
    before = TaskPushNotificationConfig()
    before.CopyFrom(given)
    stored = run(configs.set_info("t-1", given, ALICE))
    assert given == before  # not mutated
    assert (stored.id, stored.task_id, stored.url) == ("t-1", "t-1", given.url)  # normalized
    run(configs.set_info("t-1", push_config("a"), ALICE))
    run(configs.set_info("t-1", push_config("b"), ALICE))
    run(configs.set_info("t-2", push_config("a"), ALICE))

    got = run(configs.get_info("t-1", ALICE))
    assert sorted(c.id for c in got) == ["a", "b", "t-1"]
    assert all(c.task_id == "t-1" and c.token == "tok" for c in got)
    assert stored in got

    replaced = run(configs.set_info("t-1", push_config("a", url="https://elsewhere/"), ALICE))
    got = run(configs.get_info("t-1", ALICE))
    assert sorted(c.id for c in got) == ["a", "b", "t-1"]
    assert replaced in got
    assert next(c for c in got if c.id == "a").url == "https://elsewhere/"

    run(configs.delete_info("t-1", ALICE, "a"))
    run(configs.delete_info("t-1", ALICE, "missing"))  # a no-op
    assert sorted(c.id for c in run(configs.get_info("t-1", ALICE))) == ["b", "t-1"]
    run(configs.delete_info("t-1", ALICE))
    assert run(configs.get_info("t-1", ALICE)) == []
    assert [c.id for c in run(configs.get_info("t-2", ALICE))] == ["a"]  # another task's


def test_push_configs_are_scoped_to_their_owner(configs: SqlPushConfigStore) -> None:
    run(configs.set_info("t-1", push_config("a", url="https://alice/"), ALICE))
    run(configs.set_info("t-1", push_config("a", url="https://bob/"), BOB))
    run(configs.set_info("t-1", push_config("b", url="https://bob/b"), BOB))

    assert [c.url for c in run(configs.get_info("t-1", ALICE))] == ["https://alice/"]
    assert sorted(c.url for c in run(configs.get_info("t-1", BOB))) == [
        "https://bob/",
        "https://bob/b",
    ]
    assert run(configs.get_info("t-1", ANON)) == []
    dispatch = run(configs.get_info_for_dispatch("t-1"))
    assert sorted(c.url for c in dispatch) == ["https://alice/", "https://bob/", "https://bob/b"]

    run(configs.delete_info("t-1", BOB))
    assert [c.url for c in run(configs.get_info_for_dispatch("t-1"))] == ["https://alice/"]
    run(configs.delete_info("t-1", ANON, "a"))  # not the caller's: a no-op
    assert len(run(configs.get_info("t-1", ALICE))) == 1
    assert run(configs.get_info_for_dispatch("t-2")) == []


# --- survival and configuration


def test_tasks_and_configs_survive_a_new_engine(store_settings: Settings) -> None:
    engine = create_a2a_engine(store_settings)
    store, configs = SqlTaskStore(engine), SqlPushConfigStore(engine)
    task = rich_task("t-1")
    save_all(store, [(task, ALICE), (make_task("t-2", S.TASK_STATE_SUBMITTED), BOB)])
    config = run(configs.set_info("t-1", push_config("a"), ALICE))
    engine.dispose()

    again = create_a2a_engine(store_settings)  # as after a restart: tables already there
    try:
        store, configs = SqlTaskStore(again), SqlPushConfigStore(again)
        assert run(store.get("t-1", ALICE)) == task
        assert run(store.list(ListTasksRequest(), BOB)).total_size == 1
        assert [(t.id, owner) for t, owner in run(store.unfinished())] == [("t-2", "bob")]
        assert run(configs.get_info("t-1", ALICE)) == [config]
        assert run(configs.get_info_for_dispatch("t-1")) == [config]
    finally:
        again.dispose()


def test_the_sqlite_store_is_its_own_file(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    assert a2a_store_url(settings).database == str(tmp_path / "home" / "a2a.sqlite3")
    engine = create_a2a_engine(settings)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        engine.dispose()
    assert (tmp_path / "home" / "a2a.sqlite3").is_file()


def test_the_postgresql_url_uses_psycopg(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url="postgres://u:pw@db.example:6543/fl")
    url = a2a_store_url(settings)
    assert (url.drivername, url.host, url.port, url.database) == (
        "postgresql+psycopg",
        "db.example",
        6543,
        "fl",
    )


def test_a_store_that_cannot_open_is_a_config_error(tmp_path: Path) -> None:
    home = tmp_path / "a-file"
    home.write_text("not a directory")
    with pytest.raises(ConfigError, match=r"a2a\.sqlite3"):
        create_a2a_engine(Settings(home=home))
    refused = Settings(home=tmp_path, database_url="postgresql://u:hidden@127.0.0.1:1/nope")
    with pytest.raises(ConfigError, match=r"127\.0\.0\.1:1/nope") as raised:
        create_a2a_engine(refused)
    assert "hidden" not in str(raised.value)
