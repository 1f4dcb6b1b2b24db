"""Property-based run of the OpenAPI document against the real app: whatever the client sends, the
service answers with a 2xx/4xx, never a 5xx (schemathesis generates the requests from /openapi.json)."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from serve_helpers import MAX_UPLOAD


def test_no_server_errors_on_any_documented_operation(run_dir) -> None:
    from vaedx.serve.app import create_app

    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(run_dir, max_upload_bytes=MAX_UPLOAD))
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_5xx(case) -> None:
            response = case.call()
            code = response.status_code
            assert code < 500, f"{case.method} {case.path}: {code} {response.text}"

        no_5xx()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert {"POST /v1/predict", "POST /v1/predict/batch", "GET /v1/model", "GET /healthz"} <= set(checked)
