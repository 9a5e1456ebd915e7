"""Schemathesis against the live /openapi.json of a real `nncards serve`: no 5xx, every answer as documented.

Both valid and invalid requests are generated (schemathesis' positive and negative modes), then a
stateful pass follows the links between operations (a created run is read, listed, followed,
cancelled). Every check schemathesis has is on, except `positive_data_acceptance`: a request that
fits the schema may still be refused on purpose (a graph that does not validate is 422
`graph_invalid`, too many array elements 413 `too_large`).
"""

import httpx
import pytest
import schemathesis
from conftest import LiveServer
from graphs import bn_graph
from hypothesis import HealthCheck, Phase, settings

EXAMPLES_PER_OPERATION = 25
STATEFUL_SCENARIOS = 15
FUZZ_SETTINGS = dict(deadline=None, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
                     suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    # Short run and wait caps: a generated run that happens to be valid must not hold the fuzzer up.
    server = LiveServer(tmp_path_factory.mktemp("fuzz"), "--workers", "1", "--max-run-seconds", "5",
                        "--max-wait-seconds", "1").start()
    # The validation worker starts with the first validation: not within a fuzzed request's timeout.
    assert server.client.post("/graphs/validate", json=bn_graph([2]), timeout=300).json()["valid"]
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    config = schemathesis.Config.from_dict({"checks": {"positive_data_acceptance": {"enabled": False}}})
    return schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, **FUZZ_SETTINGS)
def test_every_operation_answers_as_documented(case):
    case.call_and_validate()


def test_stateful_sequences_answer_as_documented(api_schema, fuzz_server):
    api_schema.as_state_machine().run(settings=settings(max_examples=STATEFUL_SCENARIOS, stateful_step_count=4, **FUZZ_SETTINGS))
    assert httpx.get(fuzz_server.api + "/health").status_code == 200
    assert "Traceback" not in fuzz_server.log()
