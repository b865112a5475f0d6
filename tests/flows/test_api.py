"""The HTTP service for real: a uvicorn process on a free localhost port over a real store
(an SMS minilm view with a spam head, an image view of real photos, a word2vec view that is
refreshed while it is queried). Every route, the token, the size limit, and each bad input a 4xx
with its one-line message that leaves the store as it was."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DATA, SMS, need, snapshot

httpx = pytest.importorskip("httpx")
IMAGES = DATA / "images" / "hymenoptera_train"
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 1 << 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(store: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[str, subprocess.Popen]:
    """``featurestore api`` in its own process; returns its URL once /healthz answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.cli.main", "api", "--store", str(store), "--port", str(port), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return url, process
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the service did not start: {process.stderr.read().decode()[-2000:] if process.stderr else ''}")
        time.sleep(0.3)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """SMS minilm view (200 messages, label and text kept) with an index and a spam head; an
    image view of 6 photos (ants and bees) with an index; a word2vec view of 120 messages."""
    need(SMS)
    need(IMAGES)
    from featurestore import TextSource, materialize
    from featurestore.index import build_index
    from featurestore.sources.images import ImageSource
    from models import spam
    from models.registry import save_model

    root = tmp_path_factory.mktemp("api")
    lines = SMS.read_text(encoding="utf-8").splitlines()
    (root / "sms.txt").write_text("\n".join(lines[:200]) + "\n", encoding="utf-8")
    (root / "live.txt").write_text("\n".join(lines[:120]) + "\n", encoding="utf-8")
    for label in ("ants", "bees"):
        (root / "photos" / label).mkdir(parents=True)
        for path in sorted((IMAGES / label).glob("*.jpg"))[:3]:
            shutil.copy(path, root / "photos" / label / path.name)
    store = root / "store"
    cpu = {"device": "cpu"}
    materialize(TextSource(str(root / "sms.txt"), format="sms", id_col="@line", keep=("label", "text")), "sms", "minilm", store=store, encoder_options=cpu)
    materialize(ImageSource(str(root / "photos")), "photos", "efficientnet-lite0", store=store, encoder_options=cpu)
    materialize(TextSource(str(root / "live.txt"), format="sms", id_col="@line", keep=("label", "text")), "live", "word2vec", store=store)
    for view in ("sms", "photos", "live"):
        build_index(view, store=store)
    save_model("spam", spam.train("sms", n_splits=3, store=store), store=store)
    return store


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    token_file = tmp_path_factory.mktemp("secret") / "token"
    token_file.write_text(TOKEN + "\n")
    url, process = start_server(store, "--token-file", str(token_file), "--max-body", str(MAX_BODY))
    client = httpx.Client(base_url=url, headers=AUTH, timeout=120)
    # warm every view once: the first query of a view writes its read snapshot under _cache
    for view in ("sms", "photos", "live"):
        assert client.post("/v1/features", json={"view": view, "ids": ["0"]}).status_code == 200
    assert client.post("/v1/search", json={"view": "sms", "texts": ["warm up"], "k": 1}).status_code == 200
    yield url, client
    client.close()
    stop(process)


def image_b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def photo(store: Path) -> Path:
    return next((store.parent / "photos" / "ants").glob("*.jpg"))


# ------------------------------------------------------------------------------------ routes


def test_healthz_is_open_and_every_other_route_needs_the_token(server):
    url, _ = server
    assert httpx.get(f"{url}/healthz").json()["status"] == "ok"
    for method, path in (("GET", "/v1/views"), ("GET", "/metrics"), ("GET", "/openapi.json"), ("POST", "/v1/search")):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = httpx.request(method, f"{url}{path}", headers=headers, json={"view": "sms", "texts": ["x"]})
            assert response.status_code == 401, (path, headers)
            assert response.headers["www-authenticate"] == "Bearer"
            assert "needs a bearer token" in response.json()["error"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
def test_the_server_parses_http_with_httptools_on_uvloop(server):
    """uvicorn chooses its HTTP parser and event loop by what is installed: the flows extra brings
    httptools and uvloop (h11 and asyncio cost ~30% more CPU a request); the server has both loaded."""
    url, _ = server
    pid = httpx.get(f"{url}/healthz").json()["pid"]
    maps = Path(f"/proc/{pid}/maps").read_text()  # the shared objects mapped into the server
    assert "/httptools/parser/parser." in maps, "uvicorn fell back to h11"
    assert "/uvloop/loop." in maps, "uvicorn fell back to asyncio's loop"


def test_views_lists_every_view_with_its_index_and_what_is_served(server):
    _, client = server
    views = {v["view"]: v for v in client.get("/v1/views").json()}
    assert set(views) == {"sms", "photos", "live"}
    assert views["sms"]["dim"] == 384 and views["sms"]["modality"] == "text" and views["sms"]["index"]["rows"] == 200
    assert views["photos"]["dim"] == 1280 and views["photos"]["modality"] == "image"
    assert views["sms"]["served"]["table_version"] == views["sms"]["index"]["table_version"]
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {"/v1/search", "/v1/features", "/v1/embed", "/v1/predict/{model}", "/v1/views", "/healthz", "/metrics"} <= paths


def test_text_id_vector_and_filtered_searches_agree(server, store):
    _, client = server
    texts = ["WINNER!! claim your free prize now, call 0800", "are we still meeting for lunch today?"]
    by_text = client.post("/v1/search", json={"view": "sms", "texts": texts, "k": 5}).json()
    assert len(by_text["results"]) == 2 and all(len(hits) == 5 for hits in by_text["results"])
    first = by_text["results"][0]
    assert [h["score"] for h in first] == sorted((h["score"] for h in first), reverse=True)
    assert all(set(h) == {"entity_id", "score", "label", "text"} for h in first)
    assert sum(h["label"] == "spam" for h in first) >= 3  # a spam-like query finds spam
    vectors = client.post("/v1/embed", json={"view": "sms", "texts": texts}).json()["vectors"]
    by_vector = client.post("/v1/search", json={"view": "sms", "vectors": vectors, "k": 5}).json()
    assert [[h["entity_id"] for h in q] for q in by_vector["results"]] == [[h["entity_id"] for h in q] for q in by_text["results"]]
    top = first[0]["entity_id"]
    by_id = client.post("/v1/search", json={"view": "sms", "ids": [top], "k": 3}).json()["results"][0]
    assert by_id[0]["entity_id"] == top and by_id[0]["score"] == pytest.approx(1.0, abs=1e-4)
    filtered = client.post("/v1/search", json={"view": "sms", "texts": texts[1:], "k": 7, "where": "label = 'spam'"}).json()["results"][0]
    assert len(filtered) == 7 and {h["label"] for h in filtered} == {"spam"}
    assert set(by_text["generation"]) == {"index", "index_version", "table_version"}


def test_image_search_by_upload_and_base64_find_the_photo_itself(server, store):
    _, client = server
    path = photo(store)
    raw = client.post("/v1/search?view=photos&k=3", content=path.read_bytes(), headers={**AUTH, "Content-Type": "image/jpeg"}).json()
    b64 = client.post("/v1/search", json={"view": "photos", "images": [image_b64(path)], "k": 3}).json()
    assert raw["results"] == b64["results"]
    assert raw["results"][0][0]["entity_id"] == f"ants/{path.name}" and raw["results"][0][0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert raw["results"][0][0]["label"] == "ants"


def test_multipart_uploads_answer_as_the_json_forms_do(server, store):
    """Image files in the form field ``images`` (one or several) beside the other fields as form
    fields or in the query string, on search, embed and predict: the same answers as base64 JSON."""
    _, client = server
    ants = sorted((store.parent / "photos" / "ants").glob("*.jpg"))[:2]
    files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in ants]
    as_json = client.post("/v1/search", json={"view": "photos", "images": [image_b64(p) for p in ants], "k": 3}).json()
    uploaded = client.post("/v1/search", files=files, data={"view": "photos", "k": "3"}).json()
    assert uploaded["results"] == as_json["results"] and len(uploaded["results"]) == 2
    assert [q[0]["entity_id"] for q in uploaded["results"]] == [f"ants/{p.name}" for p in ants]
    in_query = client.post("/v1/search?view=photos&k=3", files=files[:1]).json()
    assert in_query["results"] == as_json["results"][:1]
    filtered = client.post("/v1/search", files=files[:1], data={"view": "photos", "k": "2", "where": "label = 'bees'"}).json()
    assert [h["label"] for h in filtered["results"][0]] == ["bees", "bees"]
    embedded = client.post("/v1/embed", files=files, data={"view": "photos"}).json()
    reference = client.post("/v1/embed", json={"view": "photos", "images": [image_b64(p) for p in ants]}).json()
    np.testing.assert_allclose(embedded["vectors"], reference["vectors"], atol=1e-6)
    labels = client.post("/v1/predict/@imagenet", files=[*files, ("images", ("notes.txt", b"not an image", "text/plain"))], data={"k": "2"}).json()
    assert [p["label"] for p in labels["predictions"]] == [p["label"] for p in client.post(
        "/v1/predict/@imagenet", json={"images": [image_b64(p) for p in ants], "k": 2}).json()["predictions"]] + [None]
    assert labels["predictions"][2]["error"] == "not an image (unrecognised format)"  # a failed row, as in a JSON batch
    texts = ["WINNER!! claim your free prize now", "lunch today?"]  # text fields repeat to make the list
    by_form = client.post("/v1/search", data={"view": "sms", "texts": texts, "k": "4"}).json()  # URL-encoded
    assert by_form["results"] == client.post("/v1/search", json={"view": "sms", "texts": texts, "k": 4}).json()["results"]


def multipart(fields: dict[str, str], files: list[tuple[str, bytes]]) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body built by httpx, with its Content-Type header."""
    request = httpx.Request("POST", "http://x/", data=fields, files=[(name, ("f", data, "application/octet-stream")) for name, data in files])
    return request.read(), {**AUTH, "Content-Type": request.headers["content-type"]}


PHOTO = b"<a photo of the store>"
BAD_UPLOADS = [
    ("/v1/search", {"view": "sms"}, [("images", b"jpeg")], 400, "holds text vectors; query it with a text"),
    ("/v1/search", {"view": "photos"}, [("images", b"not an image at all")], 400, "cannot encode query image 1 of 1"),
    ("/v1/search", {"view": "photos", "k": "0"}, [("images", b"x")], 400, "k must be a positive int. Got 0 instead."),
    ("/v1/search", {"view": "photos", "k": "3", "where": "colour = 'red'"}, [("images", PHOTO)], 400, "colour"),
    ("/v1/search", {"view": "photos"}, [("file", b"x")], 422, "file field 'file' is not accepted; send image files in the form field 'images'"),
    ("/v1/search", {"view": "photos", "images": "aGVsbG8="}, [("images", b"x")], 422, "field 'images' came both as files and as text"),
    ("/v1/search", {"view": "photos", "colour": "red"}, [("images", b"x")], 422, "field 'colour' is not accepted"),
    ("/v1/search", {"view": "sms", "vectors": "[[0.1,"}, [], 422, "field 'vectors' must be JSON text in a form"),
    ("/v1/search", {"k": "3"}, [("images", b"x")], 422, "field 'view' is required"),
    ("/v1/embed", {"view": "sms"}, [("images", b"x")], 400, "holds text vectors; query it with a text"),
    ("/v1/predict/spam", {}, [("images", b"x")], 400, "takes texts"),
    ("/v1/predict/@imagenet", {"k": "0"}, [("images", PHOTO)], 400, "k must be an int from 1 to 1000"),
    ("/v1/features", {"view": "photos", "ids": "x"}, [("images", b"x")], 422, "field 'images' is not accepted"),
]


@pytest.mark.parametrize(("path", "fields", "files", "status", "message"), BAD_UPLOADS, ids=[f"{p}:{m[:30]}" for p, _, _, _, m in BAD_UPLOADS])
def test_bad_uploads_are_a_4xx_with_the_message_and_leave_the_store_unchanged(server, store, path, fields, files, status, message):
    _, client = server
    before = snapshot(store)
    body, headers = multipart(fields, [(name, photo(store).read_bytes() if data == PHOTO else data) for name, data in files])
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error and "\n" not in error
    assert snapshot(store) == before


def test_an_upload_past_the_size_limit_or_malformed_is_refused(server, store):
    _, client = server
    before = snapshot(store)
    body, headers = multipart({"view": "photos"}, [("images", photo(store).read_bytes()), ("images", os.urandom(MAX_BODY))])
    too_large = client.post("/v1/search", content=body, headers=headers)
    assert too_large.status_code == 413 and f"at most {MAX_BODY}" in too_large.json()["error"]

    def chunks():  # no Content-Length: the limit holds on the bytes uploaded
        yield body[: MAX_BODY // 2]
        yield body[MAX_BODY // 2 :]

    streamed = client.post("/v1/search", content=chunks(), headers=headers)
    assert streamed.status_code == 413 and "passed" in streamed.json()["error"]
    no_boundary = client.post("/v1/search", content=b"--x\r\n", headers={**AUTH, "Content-Type": "multipart/form-data"})
    assert no_boundary.status_code == 400 and "boundary" in no_boundary.json()["error"]
    broken = client.post("/v1/search", content=b"garbage", headers={**AUTH, "Content-Type": "multipart/form-data; boundary=zz"})
    assert broken.status_code in (400, 422) and "\n" not in broken.json()["error"]
    assert snapshot(store) == before


def test_features_return_the_stored_vectors_and_report_unknown_ids(server, store):
    from featurestore import Store

    _, client = server
    frame = Store(store).resolve_table("sms").latest(["label"])
    rows = {e: i for i, e in enumerate(frame.ids.tolist())}
    answer = client.post("/v1/features", json={"view": "sms", "ids": ["3", "nope", "10"]}).json()
    assert [f["entity_id"] for f in answer["found"]] == ["3", "10"] and answer["unknown"] == ["nope"]
    for found in answer["found"]:
        np.testing.assert_allclose(found["vector"], frame.vectors[rows[found["entity_id"]]], rtol=0, atol=1e-7)
        assert found["label"] == frame.columns.column("label")[rows[found["entity_id"]]].as_py()
    past = client.post("/v1/features", json={"view": "sms", "ids": ["3"], "as_of": 0, "vectors": False}).json()
    assert past["table_version"] == 0 and past["found"][0]["entity_id"] == "3" and "vector" not in past["found"][0]


def test_embed_gives_the_materialized_vectors_and_encoder_id(server, store):
    from featurestore import Store

    _, client = server
    table = Store(store).resolve_table("sms")
    frame = table.latest(["text"])
    answer = client.post("/v1/embed", json={"view": "sms", "texts": frame.columns.column("text").to_pylist()[:4]}).json()
    assert answer["encoder_id"] == table.meta.encoder_id and answer["dim"] == 384 and answer["errors"] == [None] * 4
    np.testing.assert_allclose(np.array(answer["vectors"]), frame.vectors[:4], atol=1e-5)
    image = client.post("/v1/embed", json={"view": "photos", "images": [image_b64(photo(store))]}).json()
    assert len(image["vectors"][0]) == 1280


def test_predict_on_texts_and_on_stored_ids(server, store):
    from featurestore import Store

    _, client = server
    frame = Store(store).resolve_table("sms").latest(["text", "label"])
    texts = frame.columns.column("text").to_pylist()[:6]
    by_text = client.post("/v1/predict/spam", json={"texts": texts}).json()
    assert by_text["model"] == "spam" and by_text["version"] == 1 and by_text["task"] == "spam"
    by_id = client.post("/v1/predict/spam:1", json={"ids": frame.ids[:6].tolist()}).json()
    assert [p["id"] for p in by_id["predictions"]] == frame.ids[:6].tolist()
    for a, b in zip(by_text["predictions"], by_id["predictions"]):  # the stored vector is what encoding the text gives
        assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], abs=1e-4)


def test_predict_reports_how_far_inputs_are_from_the_training_data(server, store):
    """Added fields only: per prediction ``ood`` and ``ood_distance``, and the summary ``ood``."""
    from featurestore import Store

    _, client = server
    frame = Store(store).resolve_table("sms").latest(["text"])
    cranfield = DATA / "search" / "cranfield" / "cran.all.1400"
    need(cranfield)
    abstracts = [" ".join(doc.split("\n.W\n", 1)[1].split()) for doc in cranfield.read_text(encoding="utf-8").split("\n.I ")[1:11]]
    far = client.post("/v1/predict/spam", json={"texts": abstracts}).json()
    assert {"model", "version", "task", "predictions"} <= set(far) and all({"id", "label", "score"} <= set(p) for p in far["predictions"])
    assert far["ood"]["recorded"] and far["ood"]["inputs"] == 10 and far["ood"]["beyond"] == sum(p["ood"] for p in far["predictions"]) >= 8
    assert far["ood"]["warning"].startswith(f"{far['ood']['beyond']} of 10 inputs are farther from the training data than 99%")
    stored = client.post("/v1/predict/spam", json={"ids": frame.ids[:4].tolist()}).json()  # training rows: distance 0
    assert [p["ood"] for p in stored["predictions"]] == [False] * 4 and stored["ood"]["share"] == 0 and stored["ood"]["warning"] is None
    assert all(p["ood_distance"] < far["ood"]["threshold"] < q["ood_distance"] for p in stored["predictions"] for q in far["predictions"] if q["ood"])


def test_prediction_as_is_imagenet_labels_and_zero_shot_texts(server, store):
    _, client = server
    ants = sorted((store.parent / "photos" / "ants").glob("*.jpg"))
    bees = sorted((store.parent / "photos" / "bees").glob("*.jpg"))
    answer = client.post("/v1/predict/@imagenet", json={"images": [image_b64(p) for p in ants + bees], "k": 3}).json()
    assert answer["model"] == "@imagenet" and all(len(p["top"]) == 3 for p in answer["predictions"])
    labels = [p["label"] for p in answer["predictions"]]
    assert labels.count("ant") >= 2 and labels.count("bee") >= 2  # EfficientNet-Lite0's own ImageNet classes
    assert all(0 < p["score"] <= 1 and p["top"][0]["score"] >= p["top"][1]["score"] for p in answer["predictions"])
    labels = {"spam": "an advertisement: you won a prize or cash, call or text this number to claim it",
              "ham": "a personal message between friends or family about everyday plans"}
    texts = ["Congratulations! You have won a free cash prize. Call 09061701461 now to claim", "ok see you at home later, I'll bring dinner"]
    zero = client.post("/v1/predict/@zero-shot", json={"view": "sms", "texts": texts, "labels": labels}).json()
    assert [p["label"] for p in zero["predictions"]] == ["spam", "ham"]
    assert all(-1 <= p["similarity"] <= 1 and len(p["top"]) == 2 for p in zero["predictions"])


def test_prediction_as_is_from_the_command_line(cli, store):
    code, out, err = cli("as-is", "imagenet", str(photo(store)), "-k", "2", "--json")
    assert code == 0, err
    assert json.loads(out)[0]["label"] == "ant"
    code, _, err = cli("as-is", "zero-shot", "some text", "--store", str(store))
    assert code == 2 and err.startswith("featurestore: error: zero-shot needs --view") and err.count("\n") == 1
    code, _, err = cli("as-is", "zero-shot", "x", "--view", "sms", "--label", "spam", "--store", str(store))
    assert code == 2 and "expected NAME=DESCRIPTION" in err


def test_metrics_count_requests_per_route_and_show_the_generation_served(server):
    _, client = server
    client.post("/v1/search", json={"view": "sms", "ids": ["1"], "k": 2})
    text = client.get("/metrics").text
    assert 'featurestore_requests_total{method="POST",route="/v1/search",status="200"}' in text
    assert 'featurestore_request_seconds_bucket{le="0.005",route="/v1/search"}' in text
    assert 'featurestore_index_table_version{encoder_id=' in text and 'view="sms"' in text
    assert "featurestore_loaded_views 3.0" in text


# ------------------------------------------------------------------------------- bad inputs

BAD = [
    ("/v1/search", {"view": "nope", "texts": ["x"]}, 404, "view 'nope' does not exist"),
    ("/v1/search", {"view": "sms", "encoder": "word2vec", "texts": ["x"]}, 404, "has no table for encoder 'word2vec'"),
    ("/v1/search", {"view": "sms", "ids": ["nope"]}, 404, "id(s) 'nope' are not in view 'sms'"),
    ("/v1/search", {"view": "sms", "images": ["aGVsbG8="]}, 400, "holds text vectors; query it with a text"),
    ("/v1/search", {"view": "photos", "texts": ["an ant"]}, 400, "holds image vectors; query it with an image"),
    ("/v1/search", {"view": "sms", "vectors": [[0.1, 0.2]]}, 400, "must have dimension 384"),
    ("/v1/search", {"view": "sms", "vectors": [[0.1, 0.2], [0.1]]}, 422, "different lengths"),
    ("/v1/search", {"view": "sms", "texts": ["x"], "where": "label = 'spam'; DROP TABLE x"}, 400, "filter"),
    ("/v1/search", {"view": "sms", "texts": ["x"], "where": "colour = 'red'"}, 400, "colour"),
    ("/v1/search", {"view": "sms", "texts": ["  "]}, 400, "query text 1 of 1 is empty"),
    ("/v1/search", {"view": "sms", "texts": []}, 400, "texts is empty"),
    ("/v1/search", {"view": "sms", "texts": ["x"], "k": 0}, 400, "k must be a positive int. Got 0 instead."),
    ("/v1/search", {"view": "sms", "texts": ["x"], "k": 100000}, 400, "k must be at most 1000"),
    ("/v1/search", {"view": "sms", "texts": ["x"], "k": "3"}, 422, "field 'k'"),
    ("/v1/search", {"view": "sms", "texts": ["x"], "ids": ["1"]}, 400, "give exactly one kind of query"),
    ("/v1/search", {"view": "sms", "txt": ["x"]}, 422, "field 'txt' is not accepted"),
    ("/v1/search", {"texts": ["x"]}, 422, "field 'view' is required"),
    ("/v1/search", {"view": "photos", "images": ["not base64!"]}, 422, "images[0] is not base64"),
    ("/v1/search", {"view": "photos", "images": ["aGVsbG8="]}, 400, "cannot encode query image 1 of 1"),
    ("/v1/features", {"view": "sms", "ids": ["1"], "as_of": 99}, 400, "as of 99"),
    ("/v1/embed", {"view": "sms", "texts": ["a"], "images": ["aGVsbG8="]}, 422, "give texts or images"),
    ("/v1/predict/nope", {"texts": ["x"]}, 404, "no model 'nope'"),
    ("/v1/predict/spam:7", {"texts": ["x"]}, 404, "has no version 7"),
    ("/v1/predict/spam", {"ids": ["nope"]}, 404, "are not in view 'sms'"),
    ("/v1/predict/spam", {"images": ["aGVsbG8="]}, 400, "takes texts"),
    ("/v1/predict/spam", {}, 400, "give exactly one kind of input"),
    ("/v1/predict/spam", {"texts": ["x"], "labels": {"a": "b"}}, 422, "field 'labels' applies to prediction as is"),
    ("/v1/predict/@nope", {"texts": ["x"]}, 404, "no prediction as is called @nope"),
    ("/v1/predict/@imagenet", {"texts": ["x"]}, 422, "@imagenet takes images"),
    ("/v1/predict/@imagenet", {"images": ["aGVsbG8="], "k": 0}, 400, "k must be an int from 1 to 1000"),
    ("/v1/predict/@zero-shot", {"view": "sms", "texts": ["x"], "labels": {"only": "one"}}, 400, "at least two labels"),
    ("/v1/predict/@zero-shot", {"view": "photos", "texts": ["x"], "labels": {"a": "b", "c": "d"}}, 400, "holds image vectors"),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), BAD, ids=[f"{p}:{m[:30]}" for p, _, _, m in BAD])
def test_bad_input_is_a_4xx_with_the_message_and_leaves_the_store_unchanged(server, store, path, body, status, message):
    _, client = server
    before = snapshot(store)
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error and "\n" not in error
    assert snapshot(store) == before


def test_malformed_json_wrong_content_type_and_too_large_bodies_are_refused(server, store):
    _, client = server
    before = snapshot(store)
    bad = client.post("/v1/search", content=b'{"view": "sms",', headers={**AUTH, "Content-Type": "application/json"})
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]
    text = client.post("/v1/search", content=b"view=sms", headers={**AUTH, "Content-Type": "text/plain"})
    assert text.status_code == 415 and "application/json" in text.json()["error"] and "multipart/form-data" in text.json()["error"]
    big = {"view": "sms", "texts": ["x" * (MAX_BODY + 10)]}
    too_large = client.post("/v1/search", json=big)
    assert too_large.status_code == 413 and f"at most {MAX_BODY}" in too_large.json()["error"]

    def chunks():  # no Content-Length: the limit holds on the bytes streamed
        for _ in range(20):
            yield b" " * (MAX_BODY // 10)

    streamed = client.post("/v1/search", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert streamed.status_code == 413 and "passed" in streamed.json()["error"]
    assert snapshot(store) == before


# ------------------------------------------------------------------------------- hot swap


def test_an_index_update_in_another_process_is_served_without_a_restart_and_never_mixed(server, store):
    """A bounded client loop (at most 3,000 requests, 10 ms apart, or 90 s) queries the vector of a message not
    yet stored while another process materializes it and updates the index: every answer is a
    200 from one generation (new entities only with the new index, every hit with its columns)."""
    from featurestore import TextSource, get_encoder, materialize

    _, client = server
    lines = SMS.read_text(encoding="utf-8").splitlines()
    more = store.parent / "live-more.txt"
    more.write_text("\n".join(lines[:160]) + "\n", encoding="utf-8")
    new_text = lines[150].split("\t", 1)[1]
    query = get_encoder("word2vec").encode([new_text]).tolist()
    old = client.post("/v1/search", json={"view": "live", "vectors": query, "k": 3}).json()
    old_version = old["generation"]["index_version"]
    assert new_text not in {h["text"] for h in old["results"][0]}

    answers: list[tuple[int, dict]] = []
    done = threading.Event()

    def loop() -> None:
        with httpx.Client(base_url=client.base_url, headers=AUTH, timeout=30) as own:
            deadline = time.monotonic() + 90
            while len(answers) < 3000 and time.monotonic() < deadline:
                response = own.post("/v1/search", json={"view": "live", "vectors": query, "k": 3})
                answers.append((response.status_code, response.json()))
                if done.is_set() and answers[-1][1].get("generation", {}).get("index_version", old_version) > old_version:
                    break
                time.sleep(0.01)  # paced: the loop must outlast the other process's update

    thread = threading.Thread(target=loop)
    thread.start()
    materialize(TextSource(str(more), format="sms", id_col="@line", keep=("label", "text")), "live", "word2vec", store=store)
    update = subprocess.run([sys.executable, "-m", "flows.cli.main", "index", "update", "--view", "live", "--store", str(store)],
                            capture_output=True, text=True, timeout=120)
    done.set()
    thread.join(timeout=120)
    assert update.returncode == 0, update.stderr
    assert answers and all(status == 200 for status, _ in answers), [a for a in answers if a[0] != 200][:2]
    for _, answer in answers:
        hits = answer["results"][0]
        assert all(h.get("text") for h in hits), answer  # index and kept columns of one generation
        new = answer["generation"]["index_version"] > old_version
        if new:
            assert hits[0]["text"] == new_text and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
        else:
            assert new_text not in {h["text"] for h in hits}
    assert answers[-1][1]["generation"]["index_version"] > old_version, "the new index was not served within the loop's bound"
    assert answers[-1][1]["generation"]["table_version"] == answers[-1][1]["generation"]["index_version"]


# ------------------------------------------------------------------------- several workers


def test_two_worker_processes_serve_one_store_without_nagle_delays(store):
    """Both workers answer (their pids differ), each on a CPU of its own where the machine has
    two; keep-alive connections opened at once are spread over them (each worker listens on a
    socket of its own); a keep-alive request is not held ~40 ms by Nagle + delayed ACK
    (uvicorn's own multi-worker socket leaves TCP_NODELAY off)."""
    import psutil

    url, process = start_server(store, "--workers", "2")
    try:
        pids = set()
        for _ in range(60):  # a new connection each time: the kernel spreads them over the workers
            pids.add(httpx.get(f"{url}/healthz", timeout=30).json()["pid"])
            if len(pids) == 2:
                break
        assert len(pids) == 2
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) == 2:  # two one-thread workers fill the CPUs: each is kept on its own (--pin's default)
            assert sorted(psutil.Process(pid).cpu_affinity() for pid in pids) == [[cpus[0]], [cpus[1]]]
        else:
            assert all(sorted(psutil.Process(pid).cpu_affinity()) == cpus for pid in pids)
        clients = [httpx.Client(base_url=url, timeout=30) for _ in range(16)]  # a pool of 16 keep-alive connections
        try:
            held = [client.get("/healthz").json()["pid"] for client in clients]
            assert set(held) == pids and [client.get("/healthz").json()["pid"] for client in clients] == held  # spread, and kept
        finally:
            for client in clients:
                client.close()
        with httpx.Client(base_url=url, timeout=30) as client:
            body = {"view": "live", "ids": ["5"], "k": 3}
            for _ in range(5):
                assert client.post("/v1/search", json=body).status_code == 200  # warm both handles
            seconds = []
            for _ in range(30):
                started = time.perf_counter()
                assert client.post("/v1/search", json=body).status_code == 200
                seconds.append(time.perf_counter() - started)
        assert sorted(seconds)[15] < 0.035, f"median keep-alive request {sorted(seconds)[15] * 1e3:.1f} ms"
    finally:
        stop(process)


def test_a_port_in_use_is_refused_before_any_worker_starts(cli, store):
    """Taken by a plain socket, or by another service's SO_REUSEPORT workers (which would
    otherwise share the port silently): one line, exit 2, nothing started."""
    for reuse_port in (False, True):
        holder = socket.socket()
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, int(reuse_port))
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        try:
            before = snapshot(store)
            code, _, err = cli("api", "--store", str(store), "--port", str(port), "--workers", "2")
            assert code == 2 and err.startswith(f"featurestore: error: cannot listen on 127.0.0.1:{port} (") and err.endswith("pick another --port or stop what uses it\n"), err
            assert snapshot(store) == before
        finally:
            holder.close()


def test_the_api_command_refuses_bad_options_with_one_line(cli, store, tmp_path):
    from flows.prefect_env import apply_defaults

    apply_defaults()  # what every command sets first, whichever test ran before: the api command itself must add nothing
    cases = [
        (("api", "--store", str(tmp_path / "none")), "no store at"),
        (("api", "--store", str(store), "--workers", "0"), "--workers, --max-views and --threads must be at least 1"),
        (("api", "--store", str(store), "--token-file", str(tmp_path / "missing")), "cannot read the token file"),
        (("api", "--store", str(store), "--max-body", "lots"), "FEATURESTORE_API_MAX_BODY must be a positive size"),
    ]
    empty = tmp_path / "empty-token"
    empty.write_text("\n")
    cases.append((("api", "--store", str(store), "--token-file", str(empty)), "is empty"))
    from flows.prefect_env import apply_defaults

    apply_defaults()  # what the command line sets once per process (its offline defaults) is not a leak
    for args, message in cases:
        before, env = snapshot(store), dict(os.environ)
        code, _, err = cli(*args)
        assert code == 2 and err.startswith("featurestore: error: ") and message in err and err.count("\n") == 1, (args, err)
        assert snapshot(store) == before and dict(os.environ) == env
