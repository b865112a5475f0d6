"""training_set on real SMS slices with word2vec: point-in-time joins, splits, manifests, bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from featurestore.errors import InvalidArgumentError, SourceError, StoreError
from featurestore.materialization import materialize
from featurestore.sources import TextSource
from featurestore.manifest import TrainingManifest
from featurestore.training import TrainingSet, training_set, training_set_from_manifest
from tests.conftest import SMS, need


def store_digest(root: Path) -> str:
    """sha256 over every file's path and bytes under the store root."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="session")
def sms_store(tmp_path_factory, word2vec) -> Path:
    """600 SMS messages (label and text kept) in a word2vec view; shared, never written to by tests."""
    need(SMS)
    root = tmp_path_factory.mktemp("training")
    path = root / "sms.txt"
    path.write_text("\n".join(SMS.read_text(encoding="utf-8").splitlines()[:600]) + "\n", encoding="utf-8")
    materialize(TextSource(str(path), format="sms", id_col="@line", keep=("label", "text")), "sms", "word2vec", store=root / "store")
    return root / "store"


@pytest.fixture(scope="session")
def kept(sms_store) -> TrainingSet:
    return training_set("sms", store=sms_store, split="text")


def test_kept_label_column_gives_aligned_arrays_and_folds(kept, sms_store, word2vec):
    assert kept.X.shape == (600, 100) and kept.X.dtype == np.float32
    assert len(kept.y) == len(kept.ids) == len(kept.groups) == len(kept.folds) == 600
    assert set(kept.y.tolist()) == {"ham", "spam"} and set(kept.folds.tolist()) == set(range(5))
    row = kept.ids.tolist().index("3")
    np.testing.assert_allclose(kept.X[row], word2vec.encode([kept.columns["text"][row]])[0], atol=1e-6)
    assert kept.manifest.rows == 600 and kept.encoders[0]["encoder_ref"] == "word2vec"


def test_text_split_never_puts_the_same_text_on_both_sides(kept):
    texts = kept.columns["text"].to_numpy()
    assert len(set(texts.tolist())) < len(texts)  # the slice has repeated messages
    for train, test in kept.splits():
        assert not set(texts[train].tolist()) & set(texts[test].tolist())
    spam_share = [np.mean(kept.y[test] == "spam") for _, test in kept.splits()]
    assert max(spam_share) - min(spam_share) < 0.05  # stratified too


def test_manifest_rebuilds_the_identical_set_after_new_writes(tmp_path, sms_file, word2vec):
    store = tmp_path / "store"
    source = TextSource(str(sms_file(120)), format="sms", id_col="@line", keep=("label",))
    materialize(source, "sms", "word2vec", store=store)
    first = training_set("sms", store=store, split="stratified", seed=3, n_splits=4)
    materialize(TextSource(str(sms_file(160, name="more")), format="sms", id_col="@line", keep=("label",)), "sms", "word2vec", store=store)
    assert len(training_set("sms", store=store)) == 160
    again = training_set_from_manifest(first.manifest, store=store)
    assert again.manifest.content_sha256 == first.manifest.content_sha256
    for name in ("ids", "X", "y", "groups", "folds"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))


def test_point_in_time_join_never_takes_a_later_feature_row(tmp_path, word2vec):
    store = tmp_path / "store"
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    pd.DataFrame({"id": ["a", "b"], "text": ["cheap flights to paris", "meeting at noon"], "ts": ["2024-01-01T00:00:00Z"] * 2}).to_csv(old, index=False)
    pd.DataFrame({"id": ["a", "b"], "text": ["win a free prize now", "lunch is ready"], "ts": ["2024-06-01T00:00:00Z"] * 2}).to_csv(new, index=False)
    for path in (old, new):
        materialize(TextSource(str(path), id_col="id", time_col="ts"), "msgs", "word2vec", store=store)
    labels = tmp_path / "labels.csv"
    pd.DataFrame(
        {
            "entity_id": ["a", "a", "b", "b", "a"],
            "label": ["ham", "spam", "ham", "ham", "spam"],
            "event_timestamp": ["2024-03-01", "2024-07-01", "2024-05-31T23:59:59Z", "2024-06-01T00:00:00Z", "2023-12-31"],
        }
    ).to_csv(labels, index=False)
    with pytest.warns(UserWarning, match="1 of 5 labels have no feature row .* at or before their time .*'a'"):
        ts = training_set("msgs", store=store, labels=labels, n_splits=2)
    expected = word2vec.encode(["cheap flights to paris", "win a free prize now", "meeting at noon", "lunch is ready"])
    np.testing.assert_allclose(ts.X, expected, atol=1e-6)  # the 2023 label has no feature yet: dropped
    assert ts.ids.tolist() == ["a", "a", "b", "b"] and ts.manifest.labels["missing"] == 1


def test_extra_encoders_concatenate_features_of_the_same_entities(tmp_path, sms_file, word2vec):
    from tests.conftest import GLOVE

    need(GLOVE)
    store = tmp_path / "store"
    source = TextSource(str(sms_file(80)), format="sms", id_col="@line", keep=("label",))
    materialize(source, "sms", "word2vec", store=store)
    glove = materialize(source, "sms", f"w2v:{GLOVE / 'glove.6B.50d.top5k.txt'}", store=store).encoder_id
    ts = training_set("sms", "word2vec", store=store, extra_encoders=[glove])
    alone = training_set("sms", "word2vec", store=store)
    assert ts.X.shape == (80, 150) and len(ts.manifest.tables) == 2
    np.testing.assert_array_equal(ts.X[:, :100], alone.X)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"labels": "category"}, SourceError, r"label column 'category' is not a kept column of view 'sms'; its columns are: label, text"),
        ({"labels": "missing.csv"}, SourceError, r"labels file not found: missing.csv"),
        ({"split": "random"}, InvalidArgumentError, r"split must be 'stratified', 'text' or 'group:COLUMN'. Got 'random'"),
        ({"split": "group:author"}, SourceError, r"column 'author' not found; the columns are: label, text, content_hash"),
        ({"n_splits": 1}, InvalidArgumentError, r"n_splits must be an int from 2"),
        ({"extra_encoders": ["word2vec"]}, InvalidArgumentError, r"extra_encoders repeat an encoder"),
    ],
)
def test_bad_arguments_fail_with_one_line_and_leave_the_store_unchanged(sms_store, kwargs, error, message):
    before = store_digest(sms_store)
    with pytest.raises(error, match=message) as info:
        training_set("sms", store=sms_store, **kwargs)
    assert "\n" not in str(info.value)
    assert store_digest(sms_store) == before


def test_labels_for_unknown_ids_warn_with_the_count_and_strict_refuses(sms_store, tmp_path):
    labels = tmp_path / "labels.jsonl"
    pd.DataFrame({"entity_id": ["1", "2", "3", "9999", "nope"], "label": ["a", "b", "a", "b", "a"]}).to_json(labels, orient="records", lines=True)
    before = store_digest(sms_store)
    with pytest.warns(UserWarning, match=r"2 of 5 labels have no feature row in view 'sms' \(e.g. entity '9999'\)"):
        ts = training_set("sms", store=sms_store, labels=labels, n_splits=2, split="text")
    assert ts.ids.tolist() == ["1", "2", "3"] and ts.manifest.labels["missing"] == 2
    assert ts.columns["text"].notna().all()
    with pytest.raises(SourceError, match=r"^2 of 5 labels have no feature row in view 'sms' \(e.g. entity '9999'\)"):
        training_set("sms", store=sms_store, labels=labels, strict=True)
    assert store_digest(sms_store) == before


def test_one_class_and_a_missing_label_column_are_refused(sms_store, tmp_path):
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"entity_id": ["1", "2", "3"], "label": ["ham"] * 3, "y": [0, 1, 0]}).to_csv(labels, index=False)
    before = store_digest(sms_store)
    with pytest.raises(SourceError, match=r"labels 'label' have one class only \('ham', 3 rows\); a classifier needs two or more"):
        training_set("sms", store=sms_store, labels=labels)
    with pytest.raises(SourceError, match=r"labels.csv: label column 'target' not found; the columns are: entity_id, label, y"):
        training_set("sms", store=sms_store, labels=labels, label_col="target")
    assert store_digest(sms_store) == before


def test_an_empty_view_is_refused(tmp_path, sms_file, word2vec):
    store = tmp_path / "store"
    materialize(TextSource(str(sms_file(20)), format="sms", id_col="@line", keep=("label",)), "sms", "word2vec", store=store)
    only_empty = tmp_path / "empty.csv"
    only_empty.write_text("id,text,label\nzzz,,ham\n")
    materialize(TextSource(str(only_empty), id_col="id", keep=("label",)), "sms", "word2vec", store=store, full_sync=True)
    before = store_digest(store)
    with pytest.raises(StoreError, match=r"^view 'sms' \(word2vec-\w+\) has no live rows at version 1; materialize it first$"):
        training_set("sms", store=store)
    with pytest.raises(StoreError, match=r"view 'nope' does not exist"):
        training_set("nope", store=store)
    assert store_digest(store) == before


def test_test_size_gives_one_grouped_train_test_split(sms_store):
    ts = training_set("sms", store=sms_store, split="text", test_size=0.25, seed=1)
    assert ts.folds is None and not (ts.train & ts.test).any() and (ts.train | ts.test).all()
    assert 0.15 < ts.test.mean() < 0.35
    hashes = ts.columns["content_hash"].to_numpy()
    assert not set(hashes[ts.train].tolist()) & set(hashes[ts.test].tolist())
    assert [len(t) for t in ts.splits()[0]] == [int(ts.train.sum()), int(ts.test.sum())]


def test_the_manifest_round_trips_through_json(kept, sms_store):
    import json

    from featurestore.store import Store

    data = json.loads(json.dumps(kept.manifest.to_dict()))
    assert TrainingManifest.from_dict(data) == kept.manifest
    version = Store(sms_store).resolve_table("sms").version()  # the table as it is: nothing was written since
    assert data["tables"] == [{"view": "sms", "encoder_id": kept.encoders[0]["encoder_id"], "version": version}]
    assert (data["kind"], data["rows"], data["arguments"]["split"]) == ("training_set", 600, "text")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.update(tables=[{"view": "sms", "encoder_id": "x", "version": "0; import os"}]), "`tables[0].version` must be a whole number >= 0; got '0; import os'"),
        (lambda m: m.update(tables=[{"view": "sms", "encoder_id": "x", "version": True}]), "`tables[0].version` must be a whole number >= 0; got True"),
        (lambda m: m.update(tables=[{"view": "sms", "encoder_id": "x", "version": 0, "__reduce__": "os.system"}]),
         "`tables[0]` is not an object of view, encoder_id and version"),
        (lambda m: m.update(tables=[]), "`tables` is empty"),
        (lambda m: m.update(kind="builtins.exec"), "`kind` is 'builtins.exec'; it must be one of: training_set, sentences, judgments"),
        (lambda m: m.update(format=1), "has format 1; this version reads format 2"),
        (lambda m: m.update(content_sha256="../../etc/passwd"), "`content_sha256` is not a sha256"),
        (lambda m: m.update(arguments=["view", "sms"]), "`arguments` must be an object; got ['view', 'sms']"),
        (lambda m: m.update(__class__="subprocess.Popen"), "unknown field '__class__'"),
        (lambda m: m.pop("rows"), "`rows` must be a whole number >= 0; got None"),
    ],
)
def test_a_damaged_or_crafted_manifest_is_refused_naming_the_field(kept, change, message):
    data = kept.manifest.to_dict()
    change(data)
    with pytest.raises(StoreError) as caught:
        TrainingManifest.from_dict(data)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(StoreError, match="not a JSON object"):
        TrainingManifest.from_dict(["format", 2])
