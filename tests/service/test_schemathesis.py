"""Schemathesis against a real ``python -m service`` process: every operation of
``/api/v1/openapi.json`` with generated data (schema-valid and schema-violating), a fixed
seed and ≥ 2,000 cases in all, then a stateful run along the document's links. Fails on
any 5xx, an undocumented status, a response that breaks its documented schema, or
schema-violating input that is accepted.

Signed bodies are signed for real (a funded key, the operator for deposits) before they
are sent, so generated fields reach the domain code instead of stopping at the signature
check. The event stream (``GET /api/v1/events``) never ends by design and is tested in
test_abuse_streams.py instead.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from bitwrk.errors import InvalidRequest
from bitwrk.keys import PrivateKey
from bitwrk.protocol import NonceSource, sign_request
from service.openapi import openapi_document
from tests.e2e.conftest import ServerProcess

CASES_PER_OPERATION = 110
SEED = 20261204
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]
STREAM = ("GET", "/api/v1/events")


class Signer:
    """Signs generated bodies with real keys so they get past the signature check."""

    def __init__(self, server: ServerProcess, session: requests.Session) -> None:
        self.exchange = str(server.info["exchange"])
        self.operator = server.operator_key
        self.user = PrivateKey.generate("regtest")
        self.nonces = NonceSource()
        self.session = session
        self.url = server.url

    def fund(self) -> None:
        fields = {"action": "deposit", "exchange": self.exchange, "nonce": self.nonces(),
                  "uid": "fund-" + secrets.token_hex(8), "account": self.user.address,
                  "amount": 10**9, "kind": "play", "ref": "schemathesis"}
        body = sign_request(self.operator, fields)
        assert self.session.post(self.url + "/api/v1/deposits", json=body).status_code == 200

    def sign(self, body: Any) -> Any:
        """A signed copy of a flat body, or ``body`` unchanged when it cannot be signed."""
        if not isinstance(body, dict) or not body:
            return body
        if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in body.values()):
            return body
        key = self.operator if body.get("action") == "deposit" else self.user
        fields = {k: v for k, v in body.items() if k not in ("signature", "address")}
        fields.update(exchange=self.exchange, nonce=self.nonces())
        try:
            return sign_request(key, fields)
        except InvalidRequest:  # odd field names or values: sent unsigned, as generated
            return body


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Signer]]:
    server = ServerProcess(Path(tmp_path_factory.mktemp("schemathesis")),
                           extra_args=("--max-connections-per-ip", "4000")).start()
    session = requests.Session()
    signer = Signer(server, session)
    signer.fund()
    yield server, signer
    session.close()
    server.stop()


def _schema() -> Any:
    return schemathesis.openapi.from_dict(openapi_document())


def _signed_case(case: Any, signer: Signer) -> Any:
    if case.body is not None and case.method == "POST":
        case.body = signer.sign(case.body)
    return case


def test_every_operation_holds_its_contract(live: tuple[ServerProcess, Signer]) -> None:
    server, signer = live
    total = 0
    operations = [r.ok() for r in _schema().get_all_operations()]
    assert len(operations) == sum(len(ops) for ops in openapi_document()["paths"].values())
    for operation in operations:
        if (operation.method.upper(), operation.path) == STREAM:
            continue
        strategy = operation.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE) \
            | operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE)

        @seed(SEED)
        @settings(max_examples=CASES_PER_OPERATION, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case: Any) -> None:
            nonlocal total
            total += 1
            case = _signed_case(case, signer)
            response = case.call(base_url=server.url, session=signer.session, timeout=30)
            case.validate_response(response, checks=CHECKS)

        run()
    assert total >= 2000, total
    assert server.running, server.log_tail()


def test_stateful_sequences_hold_the_contract(live: tuple[ServerProcess, Signer]) -> None:
    server, signer = live
    base = _schema().as_state_machine()
    calls: list[str] = []

    class Machine(base):  # type: ignore[misc, valid-type]
        def before_call(self, case: Any) -> None:
            calls.append(case.method)
            _signed_case(case, signer)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": server.url, "session": signer.session, "timeout": 30}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    Machine.run(settings=settings(max_examples=40, stateful_step_count=8, deadline=None,
                                  database=None, derandomize=True,
                                  suppress_health_check=list(HealthCheck)))
    assert len(calls) >= 100, len(calls)
    assert server.running, server.log_tail()
