"""Schema conformance: every route's served bodies validate against what the live `/openapi.json` documents.

For each route and each status it is made to answer here, the body is checked against the
schema the OpenAPI document gives for that route and status (the `default` error answer where
the status has no entry of its own). Object schemas that do not say otherwise are closed
(`additionalProperties: false`): a field served but not documented fails, as one documented
but missing does.
"""

import copy

import httpx
import pytest
from jsonschema import Draft202012Validator
from test_server import fit_run

from graphs import bn_graph

CALL = {"graph": bn_graph([2]), "steps": [{"kind": "call", "inputs": {"x": [[1.0, 2.0], [3.0, 5.0]]}}]}


def closed(schema):
    """The schema with every object that lists properties and says nothing of others closed to them."""
    if isinstance(schema, dict):
        schema = {key: closed(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    return schema


@pytest.fixture(scope="module")
def spec(live_server):
    return httpx.get(live_server.url + "/openapi.json").json()


class Conformance:
    def __init__(self, spec, client):
        self.spec, self.client = spec, client
        self.components = closed(copy.deepcopy(spec["components"]))
        self.seen: set[tuple[str, str]] = set()

    def check(self, method: str, template: str, status: int, **request) -> httpx.Response:
        path = template.format(**request.pop("path_params", {}))
        response = self.client.request(method, path, **request)
        assert response.status_code == status, (method, path, response.status_code, response.text[:500])
        self.seen.add((method.lower(), "/api/v1" + template))
        operation = self.spec["paths"]["/api/v1" + template][method.lower()]
        documented = operation["responses"].get(str(status)) or operation["responses"]["default"]
        if status in (204, 304):
            assert response.content == b""
            return response
        content = documented["content"]
        media_type = response.headers["content-type"].split(";")[0]
        assert media_type in content, (path, media_type)
        if media_type != "application/json":  # a file: its media type is what is documented
            return response
        schema = content["application/json"]["schema"]
        validator = Draft202012Validator({**closed(schema), "components": self.components})
        problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(response.json())]
        assert problems == [], (method, path, status, problems[:5])
        return response


def test_every_route_serves_what_openapi_documents(spec, live_server):
    api = Conformance(spec, live_server.client)

    cards = api.check("GET", "/cards", 200)
    api.check("GET", "/cards", 304, headers={"If-None-Match": cards.headers["etag"]})
    api.check("GET", "/cards/{card_id}", 200, path_params={"card_id": "layer_BatchNormalization"})
    api.check("GET", "/cards/{card_id}", 404, path_params={"card_id": "layer_Nothing"})
    api.check("GET", "/types", 200)
    api.check("GET", "/health", 200)
    api.check("GET", "/runs", 403, headers={"Host": "rebind.example"})
    api.check("POST", "/graphs/validate", 403, json={}, headers={"Origin": "http://elsewhere.example"})

    api.check("POST", "/graphs/validate", 200, json=bn_graph([2]))
    wrong = api.check("POST", "/graphs/validate", 200, json=bn_graph([2], {"momentum": 1.5}))
    assert wrong.json()["valid"] is False
    api.check("POST", "/graphs/validate", 400, content=b"{", headers={"content-type": "application/json"})
    api.check("POST", "/graphs/validate", 422, json={"nodes": 3})

    created = api.check("POST", "/runs", 201, json=CALL).json()
    api.check("POST", "/runs", 200, params={"wait": "true"}, json=CALL)
    api.check("POST", "/runs", 200, params={"wait": "true", "arrays": "base64"}, json=CALL)
    api.check("POST", "/runs", 422, json={"graph": bn_graph([2], {"epsilon": -1})})
    api.check("POST", "/runs", 422, json={"graph": 1})
    slow = api.check("POST", "/runs", 202, params={"wait": "0"}, json=fit_run(epochs=100_000, batch_size=1)).json()
    queued = api.check("POST", "/runs", 201, json=CALL).json()

    api.check("GET", "/runs", 200)
    api.check("GET", "/runs", 422, params={"limit": 0})
    run_id = {"run_id": created["run_id"]}
    api.check("GET", "/runs/{run_id}", 200, path_params={"run_id": slow["run_id"]})  # pending: status alone
    api.check("GET", "/runs/{run_id}", 404, path_params={"run_id": "0123"})
    api.check("GET", "/runs/{run_id}/events", 404, path_params={"run_id": "0123"})
    api.check("GET", "/runs/{run_id}/events", 422, path_params=run_id, headers={"Last-Event-ID": "-1"})
    api.check("DELETE", "/runs/{run_id}", 200, path_params={"run_id": queued["run_id"]})
    api.check("DELETE", "/runs/{run_id}", 200, path_params={"run_id": slow["run_id"]})
    api.check("DELETE", "/runs/{run_id}", 404, path_params={"run_id": "0123"})
    finished = api.client.post("/runs", params={"wait": "true"}, json=CALL).json()
    api.check("GET", "/runs/{run_id}", 200, path_params={"run_id": finished["run_id"]})
    api.check("GET", "/runs/{run_id}", 200, path_params={"run_id": finished["run_id"]}, params={"arrays": "base64"})
    model = api.check("GET", "/runs/{run_id}/model.keras", 200, path_params={"run_id": finished["run_id"]})
    api.check("GET", "/runs/{run_id}/model.keras", 404, path_params={"run_id": "0123"})
    running = api.client.post("/runs", json=fit_run(epochs=100_000, batch_size=1)).json()["run_id"]
    api.check("GET", "/runs/{run_id}/model.keras", 409, path_params={"run_id": running})
    api.client.delete(f"/runs/{running}")
    api.check("POST", "/graphs/import", 200, content=model.content, headers={"content-type": "application/octet-stream"})
    api.check("POST", "/graphs/import", 200, params={"weights": "true"}, content=model.content,
              headers={"content-type": "application/octet-stream"})
    api.check("POST", "/graphs/import", 400, content=b"no model", headers={"content-type": "application/octet-stream"})
    api.check("DELETE", "/runs/{run_id}", 204, path_params={"run_id": queued["run_id"]})  # finished: removed

    trained = api.client.get(f"/runs/{finished['run_id']}/model.keras")  # a binary 200, the file
    assert trained.status_code == 200 and trained.headers["content-type"] == "application/octet-stream"
    api.check("GET", "/runs/{run_id}/model.keras", 404, path_params={"run_id": "0123"})
    keras_file = {"content": trained.content, "headers": {"content-type": "application/octet-stream"}}
    api.check("POST", "/graphs/import", 200, **keras_file)
    api.check("POST", "/graphs/import", 200, params={"weights": "true"}, **keras_file)
    api.check("POST", "/graphs/import", 400, content=b"no model", headers={"content-type": "application/octet-stream"})

    documented = {(method, path) for path, operations in spec["paths"].items() for method in operations}
    assert documented == api.seen  # every route (the events stream's 200 is no JSON: its errors are checked)
