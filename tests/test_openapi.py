"""/openapi.json: true to the routes, and the running service fuzzed against it."""

from __future__ import annotations

import re

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from serve_app.api.app import all_routes
from serve_app.api.openapi import openapi_document
from serve_app.pipeline import Pipeline


def operations_of_the_app() -> set[tuple[str, str]]:
    routes = all_routes(pipeline=Pipeline(model_store=None, transcriber=None), readiness=None, job_queue=None)
    return {
        (re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path), method.lower())
        for route in routes
        for method in route.methods
        if method != "HEAD"
    }


def test_the_document_has_every_route_and_nothing_else() -> None:
    documented = {(path, method) for path, operations in openapi_document()["paths"].items() for method in operations}
    assert documented == operations_of_the_app()


FUZZ_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.mark.slow
def test_fuzzed_requests_never_get_a_500_and_match_the_document(service) -> None:
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    fuzzed = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) == ("DELETE", "/v1/models/{id}"):
            continue  # a lucky guess would delete an embedded model the other tests use

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(hypothesis.HealthCheck))
        def call(case) -> None:
            case.call_and_validate(checks=FUZZ_CHECKS, timeout=60)

        call()
        fuzzed.append((operation.path, operation.method.lower()))
    # schemathesis leaves out the document it was loaded from.
    assert set(fuzzed) == operations_of_the_app() - {("/v1/models/{id}", "delete"), ("/openapi.json", "get")}
