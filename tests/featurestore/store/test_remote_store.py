"""A store rooted on object storage (s3:// on a local S3 service): the tables live in the bucket,
the rest in the local work folder, and every read and write gives what a local store gives."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from featurestore.errors import StoreError
from featurestore.index import index_status
from featurestore.materialization import materialize
from featurestore.sources import TextSource
from featurestore.store import Store
from tests.conftest import bucket_keys, snapshot


def sms_source(path) -> TextSource:
    return TextSource(str(path), format="sms", id_col="@line", keep=("label",))


def sorted_latest(table):
    frame = table.latest(["label"])
    order = np.argsort(frame.ids)
    return frame.ids[order].tolist(), frame.vectors[order], [frame.columns.column("label").to_pylist()[i] for i in order]


def test_tables_live_in_the_bucket_and_read_back_as_a_local_stores(s3_store, tmp_path, sms_file, sms_lines, word2vec):
    path = sms_file(200)
    first = materialize(sms_source(path), "sms", "word2vec", store=s3_store, shard_size=64)
    assert (first.encoded, first.failed) == (200, 0)
    local = materialize(sms_source(path), "sms", "word2vec", store=tmp_path / "local", shard_size=64)

    store = Store(s3_store)
    assert store.remote is not None and store.path.parent == tmp_path / "work"
    assert store.path.name.startswith(f"s3-{s3_store.removeprefix('s3://').replace('/', '_')}-")
    keys = bucket_keys(s3_store)
    encoder_id = first.encoder_id
    assert any(k.startswith(f"{s3_store.split('/', 3)[3]}/views/sms/{encoder_id}/_delta_log/") for k in keys)
    assert any(k.endswith(".parquet") for k in keys)
    assert not (store.path / "views").exists(), "the tables belong in the bucket, not the work folder"
    assert list((store.path / "runs").glob("*.json")), "run records are written to the work folder"
    assert any("/runs/" in k for k in keys), "... and published to the bucket"

    remote_table = store.resolve_table("sms", "word2vec")
    ids, vectors, labels = sorted_latest(remote_table)
    local_ids, local_vectors, local_labels = sorted_latest(Store(tmp_path / "local").resolve_table("sms"))
    assert ids == local_ids and labels == local_labels
    np.testing.assert_array_equal(vectors, local_vectors)
    assert list((store.path / "_cache" / "sms" / encoder_id).iterdir()), "reads are served from a local snapshot"

    again = materialize(sms_source(path), "sms", "word2vec", store=s3_store)
    assert (again.encoded, again.skipped, again.table_version) == (0, 200, first.table_version)
    lines = list(sms_lines[:210])
    label, text = lines[0].split("\t", 1)
    lines[0] = f"{label}\t{text} (edited)"
    third = materialize(sms_source(sms_file(210, lines=lines)), "sms", "word2vec", store=s3_store)
    assert (third.encoded, third.skipped) == (11, 199)
    changes = remote_table.changes_since(first.table_version)
    assert changes is not None and sorted(changes.ids.tolist(), key=int) == ["1", *map(str, range(201, 211))]
    before = remote_table.latest(as_of=first.table_version)
    assert len(before) == 200 and local.table_version == first.table_version

    [info] = store.info()
    assert (info.view, info.rows, info.path) == ("sms", 210, f"{s3_store}/views/sms/{encoder_id}")


def test_index_and_search_on_a_remote_store(s3_store, sms_file, word2vec):
    from featurestore.index import build_index, search

    materialize(sms_source(sms_file(300)), "sms", "word2vec", store=s3_store)
    built = build_index("sms", store=s3_store).info
    assert built.rows == 300
    store = Store(s3_store)
    assert (store.path / "indexes" / "sms").is_dir()
    frame = store.resolve_table("sms").latest([])
    [hits] = search("sms", ids=[frame.ids[0]], k=3, store=s3_store)
    best = [h["entity_id"] for h in hits if h["score"] >= hits[0]["score"] - 1e-5]  # SMS repeats some texts
    assert frame.ids[0] in best and len(hits) == 3
    [spam] = search("sms", ids=[frame.ids[0]], k=5, where="label = 'spam'", store=s3_store)
    assert len(spam) == 5 and {h["label"] for h in spam} == {"spam"}


def test_a_missing_bucket_is_one_line_and_leaves_nothing(s3_endpoint, s3_store, tmp_path, sms_file, cli):
    missing = "s3://fs-no-such-bucket/store"
    path = sms_file(20)
    with pytest.raises(StoreError, match="cannot reach the store at s3://fs-no-such-bucket/store: NoSuchBucket"):
        materialize(sms_source(path), "sms", "word2vec", store=missing)
    code, out, err = cli("materialize", path, "--view", "sms", "--encoder", "word2vec", "--format", "sms", "--store", missing)
    assert code == 2 and "NoSuchBucket" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert snapshot(tmp_path / "work") == {}, "a failed run leaves no work folder behind"
    as_run = subprocess.run([sys.executable, "-c", "from flows.cli.main import main; main()", "info", "--store", missing],
                            capture_output=True, text=True, check=False)
    assert as_run.returncode == 2
    assert as_run.stderr == f"featurestore: error: cannot list {missing}/views: NoSuchBucket; check the storage options\n"


def test_bad_roots_and_options_are_refused(s3_store, monkeypatch, cli, tmp_path):
    with pytest.raises(StoreError, match=r"ftp:// is not a storage the store can use; give a local folder or one of s3://"):
        Store("ftp://host/store")
    with pytest.raises(StoreError, match=r"az:// is not a storage"):
        Store("az://container/store")
    assert Store("gs://bucket/store/").root == "gs://bucket/store"  # Google Cloud Storage: opened on first use
    monkeypatch.setenv("FEATURESTORE_STORAGE_OPTIONS", "{not json")
    code, _, err = cli("info", "--store", s3_store)
    assert code == 2 and "FEATURESTORE_STORAGE_OPTIONS is not JSON" in err
    monkeypatch.setenv("FEATURESTORE_STORAGE_OPTIONS", '["a"]')
    with pytest.raises(StoreError, match="must be a JSON object"):
        Store(s3_store)
    # options override the AWS_* variables: an endpoint nobody listens on fails in one line
    monkeypatch.setenv("FEATURESTORE_STORAGE_OPTIONS", '{"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "max_retries": "0"}')
    code, out, err = cli("info", "--store", s3_store)
    assert code == 2 and err.startswith(f"featurestore: error: cannot list {s3_store}/views") and len(err.strip().splitlines()) == 1
    assert snapshot(tmp_path / "work") == {}


def test_the_command_line_on_a_bucket(s3_store, tmp_path, sms_file, cli, word2vec):
    import json

    import pyarrow.parquet as pq

    path = sms_file(120)
    code, out, err = cli("materialize", path, "--view", "sms", "--encoder", "word2vec", "--format", "sms", "--id-col", "@line",
                         "--keep", "label", "--runner", "inline", "--store", s3_store, "--json")
    assert code == 0, err
    assert json.loads(out)["encoded"] == 120
    assert cli("index", "build", "--view", "sms", "--store", s3_store)[0] == 0
    code, out, err = cli("info", "--store", s3_store, "--json")
    info = json.loads(out)
    assert code == 0 and info["store"] == s3_store and info["work_folder"] == str(Store(s3_store).path)
    [table] = info["tables"]
    assert (table["rows"], table["index"]["rows"], table["index"]["versions_behind"]) == (120, 120, 0)
    code, out, err = cli("search", "--view", "sms", "--text", "free prize call now", "-k", "3", "--store", s3_store, "--json")
    assert code == 0 and len(json.loads(out)[0]) == 3
    code, out, err = cli("export", "--view", "sms", "--out", tmp_path / "export", "--store", s3_store)
    assert code == 0, err
    ids = pq.read_table(sorted((tmp_path / "export" / "metadata").glob("*.parquet"))[0]).column("entity_id").to_pylist()
    vectors = np.concatenate([np.load(f) for f in sorted((tmp_path / "export" / "emb").glob("*.npy"))])
    frame = Store(s3_store).resolve_table("sms").latest([])
    order = {e: i for i, e in enumerate(frame.ids.tolist())}
    np.testing.assert_array_equal(vectors, frame.vectors[[order[e] for e in ids]])

    sms_file(130)  # ten more rows, a second commit, then compaction rewrites the files in the bucket
    assert cli("materialize", path, "--view", "sms", "--encoder", "word2vec", "--format", "sms", "--id-col", "@line",
               "--keep", "label", "--runner", "inline", "--store", s3_store)[0] == 0
    table = Store(s3_store).resolve_table("sms")
    before = table.version()
    code, out, err = cli("compact", "--view", "sms", "--store", s3_store)
    assert code == 0, err
    assert table.version() == before + 1 and len(table.delta().file_uris()) == 1 and len(table.latest()) == 130
    code, out, err = cli("drift", "--view", "sms", "--base", "0", "--current", "1", "--store", s3_store, "--json")
    assert code == 0 and "mean_shift_relative_l2" in json.loads(out)


def test_a_second_machine_sees_the_indexes_heads_and_runs_of_the_first(s3_store, tmp_path, sms_file, sms_lines, monkeypatch, word2vec):
    """Two work folders on one bucket: what one machine builds, the other reads; an index
    update on one replaces what the other fetches, and the bucket keeps two generations."""
    from featurestore.index import build_index, search, update_index
    from models import spam
    from models.registry import list_models, load_model, save_model
    from models.tasks import predict

    materialize(sms_source(sms_file(200)), "sms", "word2vec", store=s3_store)
    build_index("sms", store=s3_store)
    trained = save_model("spam", spam.train("sms", n_splits=2, store=s3_store), store=s3_store)
    query = {"texts": ["WINNER!! claim your free prize now"], "k": 5}
    first_hits = search("sms", store=s3_store, **query)

    monkeypatch.setenv("FEATURESTORE_WORK_DIR", str(tmp_path / "machine-b"))
    other = Store(s3_store)
    assert other.path.is_relative_to(tmp_path / "machine-b") and not other.path.exists()
    assert search("sms", store=s3_store, **query) == first_hits
    [info] = other.info()
    status = index_status(info, store=other)
    assert (status["rows"], status["versions_behind"]) == (200, 0)
    model = load_model("spam", store=s3_store)
    assert model.version == trained.version == 1 and model.manifest == trained.manifest
    messages = [{"id": "a", "text": "Free entry! Text WIN to 80086 to claim your prize"}, {"id": "b", "text": "see you at lunch"}]
    assert predict(model, messages) == predict(trained, messages)
    assert [m["version"] for m in list_models(store=s3_store)] == [1]
    assert other.last_run("sms", info.encoder_id)["encoded"] == 200
    assert save_model("spam", spam.train("sms", n_splits=2, store=s3_store), store=s3_store).version == 2, "versions count across machines"

    materialize(sms_source(sms_file(230)), "sms", "word2vec", store=s3_store)  # machine b adds rows and updates the index
    assert update_index("sms", store=s3_store).info.rows == 230
    monkeypatch.setenv("FEATURESTORE_WORK_DIR", str(tmp_path / "work"))  # back on the first machine
    [info] = Store(s3_store).info()
    status = index_status(info, store=Store(s3_store))
    assert (status["rows"], status["versions_behind"]) == (230, 0)
    assert [m["version"] for m in list_models(store=s3_store)] == [1, 2]
    keys = bucket_keys(s3_store)
    assert any(k.endswith("/models/spam/2/manifest.json") for k in keys) and any(k.endswith("/indexes/sms/" + info.encoder_id + "/CURRENT") for k in keys)


def index_generations(root: str) -> set[str]:
    """The generation folders of the indexes (not pyarrow's empty directory markers)."""
    return {k.split("/")[-2] for k in bucket_keys(root) if "/indexes/" in k and not k.endswith(("/CURRENT", "/"))}


def test_publishes_keep_two_index_generations_and_a_fetch_never_mixes_them(s3_store, tmp_path, sms_file, monkeypatch, word2vec):
    from featurestore.index import build_index, search
    from featurestore.store import artifacts

    monkeypatch.setattr(artifacts, "STALE_GENERATION", artifacts.timedelta(0))
    materialize(sms_source(sms_file(100)), "sms", "word2vec", store=s3_store)
    builds = [build_index("sms", store=s3_store, index_type=kind) for kind in ("flat", "hnsw", "flat")]
    assert len(index_generations(s3_store)) == 2, "the current generation and the one before it"
    monkeypatch.setenv("FEATURESTORE_WORK_DIR", str(tmp_path / "machine-b"))
    other = Store(s3_store)
    [info] = other.info()
    assert index_status(info, store=other)["factory"] == builds[-1].info.factory == "Flat"
    assert search("sms", store=s3_store, texts=["call now"], k=3)
    folder = next((other.path / "indexes" / "sms").iterdir())
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 4 and names[0] == ".generation" and names[1].startswith("ids-") and names[2].startswith("index-") and names[3] == "index.json"
    assert not [p for p in (other.path / "indexes" / "sms").iterdir() if p.name.startswith(".")], "no download left behind"


def test_roots_that_differ_only_in_spelling_keep_apart(s3_store, tmp_path, sms_file, word2vec):
    """Work folders never collide (a digest of the exact root), and a root with a space or an
    upper-case scheme reads its own files."""
    spaced, underscored = f"{s3_store}/my store", f"{s3_store}/my_store"
    materialize(sms_source(sms_file(30)), "sms", "word2vec", store=spaced)
    materialize(sms_source(sms_file(50)), "sms", "word2vec", store=underscored)
    assert Store(spaced).path != Store(underscored).path
    assert len(Store(spaced).resolve_table("sms").latest()) == 30
    assert len(Store(underscored).resolve_table("sms").latest()) == 50
    upper = "S3://" + spaced.removeprefix("s3://")
    assert Store(upper).root == spaced and len(Store(upper).resolve_table("sms").latest([])) == 30


def test_a_report_from_a_machine_that_never_used_the_store(s3_store, tmp_path, sms_file, monkeypatch, word2vec):
    from featurestore.index import build_index
    from flows.report import write_report

    materialize(sms_source(sms_file(60)), "sms", "word2vec", store=s3_store)
    build_index("sms", store=s3_store)
    monkeypatch.setenv("FEATURESTORE_WORK_DIR", str(tmp_path / "machine-b"))
    written = write_report(tmp_path / "report.html", store=s3_store, projection="pca")
    assert (written["views"], written["indexes"]) == (1, 1)


def test_an_index_update_neither_uploads_nor_downloads_the_unchanged_index_file(s3_store, tmp_path, sms_file, monkeypatch, word2vec):
    from featurestore.index import build_index, search, update_index
    from featurestore.store.artifacts import Artifacts

    materialize(sms_source(sms_file(400)), "sms", "word2vec", store=s3_store)
    build_index("sms", store=s3_store, index_type="flat")
    monkeypatch.setenv("FEATURESTORE_WORK_DIR", str(tmp_path / "machine-b"))
    assert search("sms", store=s3_store, texts=["call now"], k=3)  # machine b holds the first generation
    monkeypatch.setenv("FEATURESTORE_WORK_DIR", str(tmp_path / "work"))

    moved: list[str] = []
    real_put, real_get = Artifacts._put, Artifacts._get
    monkeypatch.setattr(Artifacts, "_put", lambda self, path, remote: moved.append(f"up {path.name}") or real_put(self, path, remote))
    monkeypatch.setattr(Artifacts, "_get", lambda self, remote, path: moved.append(f"down {path.name}") or real_get(self, remote, path))
    materialize(sms_source(sms_file(405)), "sms", "word2vec", store=s3_store)  # 1%: the update writes a delta
    assert update_index("sms", store=s3_store).info.rows == 405
    uploads = [m for m in moved if m.startswith("up ")]
    assert any(m.startswith("up delta-") for m in uploads) and not any(m.startswith("up index-") for m in uploads), uploads
    moved.clear()
    monkeypatch.setenv("FEATURESTORE_WORK_DIR", str(tmp_path / "machine-b"))
    [hits] = search("sms", store=s3_store, texts=["call now"], k=3)
    assert hits and any(m.startswith("down delta-") for m in moved) and not any(m.startswith("down index-") for m in moved), moved
    [[hit]] = search("sms", store=s3_store, ids=["403"], k=1)  # a row of the update, found on machine b
    assert hit["score"] > 0.999
