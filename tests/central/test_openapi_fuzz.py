"""schemathesis against central's own OpenAPI schema: no request, however odd, is a 500.

Every operation in the schema gets generated requests (valid and invalid per the schema),
sent in-process to the real app on a migrated SQLite database, five ways: with no
credential, with site S01's token as generated (most name other sites: 403), and with the
token and the site id pinned to S01 (so the request reaches the service behind the
auth check); and as an admin and as a clerk limited to S01, where every answer must also
match the schema (a clerk's answers lack the financial fields, which the schema allows).
Whatever the answer is, it must be a 4xx with a message or a success, never a server
error. The SQLite database is made at import, because the schema is read from the
app when the tests are collected.

The five ways are one test per operation, each generated request sent five times, not
five tests: schemathesis builds an operation's boundary ("coverage") examples when the
test is collected, which was 22 of the file's 25 CPU-seconds of collection per worker when
each way was its own test. The first two ways end at the authentication layer (no
credential; a token for a site the request mostly does not name), whose answer does not
depend on the rest of the request, so they are sent for the first few requests of each
operation only. The clerk and the site's own token get every request of an operation
whose access rule lets them in (read from the operation's ``x-jxc-permission``), and only
those first few where the rule refuses them: ``Requires`` refuses before a parameter or
the body is read, so the rest would only repeat the same 403. The admin gets every
request of every operation.

What this file costs is mostly schemathesis and Hypothesis making the requests, not the
app answering them (docs/performance.md, "The fuzz's collection and client"). Two things
here cut what is not the requests: each operation's boundary examples are built when its
test runs, in the one process that runs it, rather than at collection in every xdist
worker; and the requests go through one in-process client instead of a new one each.
Neither changes which requests are made (compared request by request, same document).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from central_api.api.permissions import PERMISSION_KEY
from central_api.core.config import Settings
from central_api.core.db import upgrade_database
from central_api.main import create_app
from central_api.services.auth import add_site
from tests.central.access import Caller, allowed, grants
from tests.central.conftest import user_token

_folder = Path(tempfile.mkdtemp(prefix="jxc-fuzz-"))
_url = f"sqlite:///{_folder / 'central.db'}"
upgrade_database(_url)
# A day's tokens, the site's too: a deep run (JXC_FUZZ_EXAMPLES=1000), or an xdist worker
# on a busy machine that reaches an operation more than fifteen minutes after collecting
# (when this token is issued), outlasts the usual fifteen minutes, after which every
# request with the site token would end at the 401 of an expired token.
app = create_app(Settings(database_url=_url, token_ttl_s=86_400))
with app.state.engine.connect() as _connection:
    TOKEN = app.state.token_signer.issue(_connection, "S01", add_site(_connection, "S01"))
ADMIN = user_token(app.state.engine, "fuzz-admin", ["admin"], ttl_s=86_400)
CLERK = user_token(app.state.engine, "fuzz-clerk", ["warehouse_clerk"], sites=["S01"], ttl_s=86_400)

schema = schemathesis.openapi.from_asgi("/openapi.json", app)

try:  # schemathesis's own modules, not its documented API: a release may move them
    from schemathesis.generation.hypothesis import builder
    from schemathesis.python import asgi
except ImportError:  # pragma: no cover - then the examples are built at collection, as before
    builder = asgi = None  # type: ignore[assignment]

_add_coverage = getattr(builder, "add_coverage", None)
_COVERAGE = "_jxc_coverage_when_run"


def _coverage_when_run(test: Any, operation: Any, *args: Any, **kwargs: Any) -> Any:
    """Keep what schemathesis needs to build an operation's boundary examples, for later.

    schemathesis builds them (``add_coverage``, which attaches each as a Hypothesis
    ``@example``) while the test is *collected*: about 10 CPU-seconds for the 225
    operations, paid again by every xdist worker, since each collects every test, though
    only one runs a given operation. Hypothesis reads a test's explicit examples when the
    test is called, not when it is decorated, so ``_coverage_examples`` builds them with
    the same arguments just before the test runs: the same examples, in the same order
    (they are attached last either way), built once per operation. Another schema's
    tests (another app) get theirs at collection as before.
    """
    assert _add_coverage is not None  # installed only when it was found
    if operation.app is not app:
        return _add_coverage(test, operation, *args, **kwargs)
    setattr(test, _COVERAGE, (operation, args, kwargs))
    return test


if _add_coverage is not None:
    builder.add_coverage = _coverage_when_run


@pytest.fixture(autouse=True)
def _coverage_examples(request: pytest.FixtureRequest) -> None:
    """Attach the operation's boundary examples that collection left for the run."""
    test = request.node.obj
    deferred = test.__dict__.pop(_COVERAGE, None)
    if deferred is not None and _add_coverage is not None:
        operation, args, kwargs = deferred
        _add_coverage(test, operation, *args, **kwargs)


RULES = {
    (method.upper(), path): operation[PERMISSION_KEY]
    for path, operations in app.openapi()["paths"].items()
    for method, operation in operations.items()
}
"""Each operation's access rule, as the app writes it into its OpenAPI document."""
GRANTS = grants(app.state.engine)
CLERK_CALLER = Caller("clerk", roles=("warehouse_clerk",))
SITE_CALLER = Caller("site", site=True)


def _lets_in(rule: str, *, clerk: bool) -> bool:
    """Whether ``Requires`` (or the sync routes' token check) lets the caller reach the route.

    A caller the rule refuses is refused before FastAPI reads a parameter or the body
    (``test_permissions.py`` proves which callers each rule refuses), so whatever else
    a generated request holds, that caller's answer is the same 401 or 403.
    """
    return allowed(CLERK_CALLER if clerk else SITE_CALLER, rule, GRANTS)


FUZZ = settings(
    max_examples=int(os.environ.get("JXC_FUZZ_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=os.environ.get("CI", "").lower() == "true",
)
"""30 requests per operation in ``make test`` (40 until the suite met a slower machine with
no margin left in its 15 minutes: docs/performance.md, "The fresh clone on a slower
machine"); ``JXC_FUZZ_EXAMPLES=1000`` for a deep run.

Under ``CI=true`` the requests are the same on every run of the same tree, so a landing is
never decided by a random draw; a local run draws new ones each time, which is where new
bugs are found (and then pinned by a plain test, as in ``test_validation.py``). "The same
tree": Hypothesis also draws constants it finds in the project's own loaded modules, so a
change to central's or the tests' source can change some requests."""

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

AT_THE_DOOR = int(os.environ.get("JXC_FUZZ_AT_THE_DOOR", "6"))
"""Requests per operation sent the two ways that end at authentication."""

_sent_at_the_door: dict[str, int] = {}

_client = asgi.get_client(app) if asgi is not None else None
"""One in-process client for every request: schemathesis otherwise makes a new
``requests`` session (and adapters) per request, and reads the environment for proxies
and ``~/.netrc`` each time; the ASGI adapter uses neither, so ``trust_env`` is off. Its
cookie jar is emptied after each request, so every request starts without cookies, as a
new session's does. Its lifespan is the app's, started on first use (as schemathesis
does) and stopped at exit."""
if _client is not None:
    _client.trust_env = False


def _send(case: Any, way: str, headers: dict[str, str], checks: list[Any]) -> None:
    """One way of sending a case; a failure names the way, as five tests' names did."""
    if _client is not None and not _client.adapter.entered:
        _client.__enter__()
    try:
        case.call_and_validate(session=_client, headers=headers, checks=checks)
    except BaseException as error:
        error.add_note(f"sent {way}")
        raise
    finally:
        if _client is not None:
            _client.cookies.clear()


@schema.parametrize()
@FUZZ
def test_no_request_is_a_server_error_or_off_schema(case: Any) -> None:
    label = case.operation.label
    rule = RULES[(case.operation.method.upper(), case.operation.path)]
    at_the_door = _sent_at_the_door.get(label, 0) < AT_THE_DOOR
    if at_the_door:
        _sent_at_the_door[label] = _sent_at_the_door.get(label, 0) + 1
        _send(case, "with no credential", {}, [not_a_server_error])
        _send(
            case,
            "with a site token as generated",
            {"Authorization": f"Bearer {TOKEN}"},
            [not_a_server_error],
        )
    conforming = [not_a_server_error, response_schema_conformance]
    _send(case, "as an admin", {"Authorization": f"Bearer {ADMIN}"}, conforming)
    if at_the_door or _lets_in(rule, clerk=True):
        _send(case, "as a clerk of S01", {"Authorization": f"Bearer {CLERK}"}, conforming)
    if not (at_the_door or _lets_in(rule, clerk=False)):
        return
    # Last, because it changes the case: the site named is the token's own.
    if case.query and "site_id" in case.query:
        case.query["site_id"] = "S01"
    if isinstance(case.body, dict) and "site_id" in case.body:
        case.body["site_id"] = "S01"
    _send(
        case,
        "with the site token for its own site",
        {"Authorization": f"Bearer {TOKEN}"},
        [not_a_server_error],
    )


def test_an_example_attached_after_the_test_is_built_is_run() -> None:
    """What ``_coverage_examples`` relies on: Hypothesis reads a test's explicit examples
    when the test is called, so examples attached to a built test still run."""
    seen: list[int] = []

    @settings(max_examples=1, database=None, phases=[Phase.explicit])
    @given(st.integers())
    def probe(value: int) -> None:
        seen.append(value)

    example(value=-7)(probe)
    probe()
    assert seen == [-7]
