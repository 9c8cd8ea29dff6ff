"""Schema fuzzing of every endpoint against the service's own OpenAPI document (schemathesis):
no generated request, valid or not, may get a 5xx. Deterministic (derandomized) and bounded."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from service_support import KEY, Server

#: Generated requests per operation (13 operations).
EXAMPLES = 40


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    # No --allow-private-urls and --no-dns (from Server): a generated URL is refused before any
    # connection or name lookup, so the fuzzing sends nothing beyond 127.0.0.1.
    srv = Server(tmp_path_factory.mktemp("fuzz") / "data", "--workers", "1", "--max-upload-mb", "1").start()
    yield srv
    srv.stop()


def _fuzz(op, service, sent: dict[tuple[str, str], int]) -> None:
    """EXAMPLES generated requests to one operation; counts them in ``sent``."""

    @given(case=op.as_strategy())
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case) -> None:
        response = case.call_and_validate(base_url=service.url, headers={"x-api-key": KEY},
                                          checks=[not_a_server_error], timeout=60)
        sent[(op.method, op.path)] = sent.get((op.method, op.path), 0) + 1
        assert response.status_code < 500

    run()


def test_no_generated_request_gets_a_server_error(service):
    schema = schemathesis.openapi.from_url(service.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {(op.method.upper(), op.path) for op in operations}
    assert {("POST", "/v1/media/silence"), ("POST", "/api/v1/invoke"), ("POST", "/v1/videos:annotate"),
            ("POST", "/media/diagnose"), ("GET", "/media/diagnose"), ("POST", "/media/enhance"),
            ("GET", "/media/enhance"), ("POST", "/v1/upload"), ("POST", "/v1/remove-noise"),
            ("GET", "/v1/remove-noise/{jobId}/status"), ("GET", "/v1/dl/{path}")} <= paths
    sent: dict[tuple[str, str], int] = {}
    for op in operations:
        _fuzz(op, service, sent)
    print(sent)
    assert len(sent) == len(operations) and min(sent.values()) >= 5, sent
    assert "internal error" not in service.log_text()  # a 500 is logged with its traceback: none
