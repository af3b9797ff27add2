"""Every refusal and failure is an RFC 9457 problem, its status taken from its base class.

The status table maps a few bases, not the leaves: a new refusal gets its status by
inheriting one, and these tests hold every refusal central defines to that.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central_api import errors
from central_api.api.errors import PROBLEM_JSON, REFUSAL_STATUS, refusal_status
from central_api.errors import CentralError
from jxc.paths import ITEMS, STOCK, SYNC_ACK, SYNC_EVENTS
from tests.central.conftest import problem


def refusals() -> list[type[CentralError]]:
    """Every refusal central_api.errors defines, bases included."""
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, CentralError) and cls is not CentralError
    ]


def test_the_status_table_holds_bases_only() -> None:
    assert all(base.__bases__ == (CentralError,) for base in REFUSAL_STATUS)


@pytest.mark.parametrize("refusal", refusals(), ids=lambda cls: cls.__name__)
def test_every_refusal_inherits_exactly_one_base(refusal: type[CentralError]) -> None:
    bases = [base for base in REFUSAL_STATUS if issubclass(refusal, base)]
    assert len(bases) == 1, f"{refusal.__name__} inherits {bases}: pick one kind of refusal"


@pytest.mark.parametrize(
    ("refusal", "status"),
    [
        (errors.SequenceGapError, 409),
        (errors.BalanceChangedError, 409),
        (errors.UnknownSiteError, 404),
        (errors.UnknownItemError, 404),
        (errors.UnknownBarcodeError, 404),
        (errors.BarcodeTakenError, 409),
        (errors.FeedCursorAheadError, 409),
        (errors.CredentialRefusedError, 401),
        (errors.TokenRefusedError, 401),
        (errors.SiteForbiddenError, 403),
        (errors.SiteCredentialExistsError, 409),
        (errors.UnknownCredentialError, 404),
        (errors.InvalidSiteIdError, 422),
        (errors.TooLargeError, 413),
        (CentralError, 400),
    ],
    ids=lambda value: getattr(value, "__name__", str(value)),
)
def test_each_refusal_keeps_the_status_it_had(refusal: type[CentralError], status: int) -> None:
    assert refusal_status(refusal) == status


def test_a_refusal_is_a_problem(client: TestClient) -> None:
    response = client.get(f"{ITEMS}/NOPE")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json() == problem(404, "item 'NOPE' does not exist")


def test_a_401_names_the_bearer_scheme(client: TestClient) -> None:
    response = client.get(SYNC_ACK, params={"site_id": "S01"}, headers={"Authorization": "x"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["title"] == "Unauthorized"


def test_a_request_breaking_its_schema_keeps_the_field_list_and_the_message(
    client: TestClient, site: Any
) -> None:
    response = client.post(SYNC_EVENTS, json=site.batch([site.event("receipt", 1.5)]))

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    answer = response.json()
    assert (answer["type"], answer["status"]) == ("about:blank", 422)
    assert answer["detail"][0]["loc"] == ["body", "events", 0, "qty"]
    assert answer["message"].startswith("body.events[0].qty: ")


def test_the_frameworks_own_refusals_are_problems_too(client: TestClient) -> None:
    unknown = client.get("/api/v1/no-such-thing")
    wrong_method = client.delete(STOCK)

    assert (unknown.status_code, unknown.json()) == (404, problem(404, "Not Found"))
    assert unknown.headers["content-type"] == PROBLEM_JSON
    assert (wrong_method.status_code, wrong_method.json()) == (
        405,
        problem(405, "Method Not Allowed"),
    )
    assert wrong_method.headers["allow"] == "GET"


def test_the_openapi_document_describes_every_error_as_a_problem(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    described: dict[str, str] = {}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                if int(code) >= 400:
                    (media, content), *others = response["content"].items()
                    assert not others
                    schema = content["schema"]
                    # One route names two shapes for a status (an import's 422: its row
                    # errors, or a query that breaks its schema): each is still a problem.
                    refs = [one["$ref"] for one in schema.get("anyOf", [schema])]
                    described[f"{method} {path} {code}"] = f"{media} {' | '.join(refs)}"

    assert described["post /api/v1/sync/events 409"] == (
        f"{PROBLEM_JSON} #/components/schemas/Problem"
    )
    assert described["post /api/v1/sync/events 422"] == (
        f"{PROBLEM_JSON} #/components/schemas/ValidationProblem"
    )
    # The probes answer their own shape when down: a load balancer reads the status.
    assert described["get /healthz 503"] == "application/json #/components/schemas/HealthOut"
    assert described["get /readyz 503"] == "application/json #/components/schemas/HealthOut"
    probes = ("get /healthz", "get /readyz")
    others = {key: value for key, value in described.items() if not key.startswith(probes)}
    assert all(value.startswith(f"{PROBLEM_JSON} ") for value in others.values()), others
    assert {"Problem", "ValidationProblem"} <= document["components"]["schemas"].keys()
    assert described["post /api/v1/imports/items 422"] == (
        f"{PROBLEM_JSON} #/components/schemas/ImportProblem | "
        "#/components/schemas/ValidationProblem"
    )
