"""The catalogue routes answer gzip when the client accepts it, identity otherwise, each with its own ETag."""

import gzip
import json

import pytest

ROUTES = ("/cards", "/cards/layer_BatchNormalization", "/types")


def fetch(server, path: str, **headers: str):
    """The answer's status, headers and body exactly as sent (httpx would undo the gzip)."""
    with server.client.stream("GET", path, headers=headers) as answer:
        return answer.status_code, answer.headers, b"".join(answer.iter_raw())


@pytest.mark.parametrize("path", ROUTES)
def test_gzip_when_accepted_identity_otherwise(live_server, path):
    status, plain_headers, plain = fetch(live_server, path, **{"Accept-Encoding": "identity"})
    assert status == 200 and "content-encoding" not in plain_headers
    document = json.loads(plain)
    for accepted in ("gzip", "br, gzip;q=0.5, deflate", "*", "GZIP"):
        status, headers, body = fetch(live_server, path, **{"Accept-Encoding": accepted})
        assert status == 200 and headers["content-encoding"] == "gzip", accepted
        assert len(body) < len(plain) and json.loads(gzip.decompress(body)) == document
        assert headers["vary"].lower() == "accept-encoding" and headers["content-type"] == "application/json"
    for refused in ("br", "gzip;q=0", "*;q=0", "deflate, *;q=0"):
        status, headers, body = fetch(live_server, path, **{"Accept-Encoding": refused})
        assert status == 200 and "content-encoding" not in headers and body == plain, refused
    assert plain_headers["vary"].lower() == "accept-encoding"


@pytest.mark.parametrize("path", ROUTES)
def test_each_encoding_has_its_own_strong_etag(live_server, path):
    _, plain, _ = fetch(live_server, path, **{"Accept-Encoding": "identity"})
    _, zipped, _ = fetch(live_server, path, **{"Accept-Encoding": "gzip"})
    plain_tag, gzip_tag = plain["etag"], zipped["etag"]
    assert plain_tag.startswith('"') and gzip_tag == plain_tag[:-1] + '-gzip"'

    for encoding, tag in (("identity", plain_tag), ("gzip", gzip_tag)):
        for if_none_match in (tag, "W/" + tag, f'"stale", {tag}', "*"):
            status, headers, body = fetch(live_server, path, **{"Accept-Encoding": encoding,
                                                                "If-None-Match": if_none_match})
            assert status == 304 and body == b"", (encoding, if_none_match)
            assert headers["etag"] == tag and headers["vary"].lower() == "accept-encoding"
    # The other encoding's tag names other bytes: the full answer, in the encoding asked for.
    status, headers, _ = fetch(live_server, path, **{"Accept-Encoding": "gzip", "If-None-Match": plain_tag})
    assert status == 200 and headers["etag"] == gzip_tag
    status, headers, _ = fetch(live_server, path, **{"Accept-Encoding": "identity", "If-None-Match": gzip_tag})
    assert status == 200 and headers["etag"] == plain_tag


def test_unknown_card_and_wrong_method_keep_their_envelopes(live_server):
    answer = live_server.client.get("/cards/layer_Nothing", headers={"Accept-Encoding": "gzip"})
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    answer = live_server.client.post("/cards", json={})
    assert answer.status_code == 405 and answer.json()["error"]["code"] == "method_not_allowed"
