"""NER heads on real CoNLL-2003 slices with word2vec token features (fast, 100-d, frozen)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from featurestore.errors import EncoderError, FeatureStoreError, InvalidArgumentError
from featurestore.materialization import materialize
from featurestore.sources import ConllSource
from featurestore.store import Store
from models import ner
from models.base import LoadedModel
from models.tagging import TorchTokenClassifier, bio_decode
from tests.conftest import DATA, need

CONLL = DATA / "ner" / "conll2003"
TOKEN = {"granularity": "token"}
# Measured on these slices (300 train / 150 testa sentences): logreg 0.33, mlp 0.39 entity F1
# (word2vec is lower-cased and knows no punctuation: weak NER features, but fast). The margin
# covers thread-count and BLAS differences; a broken head scores near 0.
MIN_F1 = {"logreg": 0.25, "mlp": 0.30}


def conll_slice(name: str, sentences: int, folder) -> str:
    """The file's first ``sentences`` sentences, with the -DOCSTART- lines between them."""
    need(CONLL / name)
    blocks = (CONLL / name).read_text(encoding="utf-8").split("\n\n")
    ends = np.cumsum([not b.startswith("-DOCSTART-") for b in blocks])
    path = folder / f"{name}.{sentences}"
    path.write_text("\n\n".join(blocks[: int(np.searchsorted(ends, sentences)) + 1]) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="session")
def ner_store(tmp_path_factory, word2vec) -> Store:
    """Token views of 300 eng.train and 150 eng.testa sentences, plus two views NER must refuse."""
    folder = tmp_path_factory.mktemp("ner")
    store = Store(folder / "store")
    train, testa = conll_slice("eng.train", 300, folder), conll_slice("eng.testa", 150, folder)
    materialize(ConllSource(train), "train", "word2vec", store=store, encoder_options=TOKEN)
    materialize(ConllSource(testa), "testa", "word2vec", store=store, encoder_options=TOKEN)
    materialize(ConllSource(testa), "sentences", "word2vec", store=store)
    materialize(ConllSource(testa, keep=()), "untagged", "word2vec", store=store, encoder_options=TOKEN)
    return store


@pytest.fixture(scope="session")
def trained(ner_store):
    """Both heads trained on the train slice and scored on the testa slice, once."""
    return {
        "logreg": ner.train("train", eval_view="testa", head="logreg", store=ner_store),
        "mlp": ner.train("train", eval_view="testa", head="mlp", store=ner_store),
    }


@pytest.fixture(scope="session")
def sentences(ner_store) -> ner.Sentences:
    return ner.read_sentences(ner.token_table("train", store=ner_store))[0]


def loaded(result, store: Path, name: str = "ner") -> LoadedModel:
    manifest = {"task": result.task, "encoders": result.encoders}
    return LoadedModel(name=name, version=1, path=None, head=result.head, manifest=manifest, store=str(store))  # type: ignore[arg-type]


def test_sentences_come_back_in_word_order_with_bio_tags(sentences):
    assert len(sentences.ids) == 300 and sentences.ids == sorted(sentences.ids)
    assert all(len(v) == len(t) for v, t in zip(sentences.vectors, sentences.tags))
    assert sentences.vectors[0].shape[1] == 100
    first = sentences.tags[0]  # "EU rejects German call to boycott British lamb ."
    assert first == ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"]


@pytest.mark.parametrize("head", ["logreg", "mlp"])
def test_heads_score_entities_on_testa_overall_and_per_type(trained, head):
    result = trained[head]
    assert result.task == "ner" and result.metrics["f1"] >= MIN_F1[head]
    assert set(result.report["per_type"]) == {"PER", "LOC", "ORG", "MISC"}
    assert {"f1_PER", "f1_LOC", "f1_ORG", "f1_MISC", "f1_strict"} <= set(result.metrics)
    assert result.training_manifest.arguments["eval_view"] == "testa" and result.training_manifest.details["train_sentences"] == 300
    assert [t.view for t in result.training_manifest.tables] == ["train", "testa"] and result.training_manifest.kind == "sentences"
    assert result.encoders[0]["encoder_ref"] == "word2vec" and result.params["head"] == head


def test_predict_finds_entities_with_exact_character_spans(trained, ner_store):
    text = "EU rejects German call to boycott British lamb ."
    [out] = ner.predict(loaded(trained["mlp"], ner_store), [{"id": "a", "text": text}])
    assert out["id"] == "a" and out["label"] == len(out["entities"]) >= 1 and 0 < out["score"] <= 1
    for entity in out["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["text"]
        assert entity["type"] in {"PER", "LOC", "ORG", "MISC"} and 0 < entity["score"] <= 1
    assert {"text": "German", "type": "MISC"} in [{"text": e["text"], "type": e["type"]} for e in out["entities"]]


def test_predict_refuses_a_model_whose_encoder_differs(trained, ner_store):
    model = loaded(trained["logreg"], ner_store)
    model.manifest["encoders"] = [{**model.manifest["encoders"][0], "encoder_id": "word2vec-000000"}]
    with pytest.raises(EncoderError, match="word2vec-000000"):
        ner.predict(model, [{"id": 1, "text": "Paris"}])


@pytest.mark.parametrize("options", [{"arch": "mlp", "context": 1}, {"arch": "bilstm", "crf": True, "hidden": 32}])
def test_torch_head_is_reproducible_and_round_trips_through_its_state(sentences, options):
    X, y = sentences.vectors[:150], sentences.tags[:150]
    first = TorchTokenClassifier(max_epochs=2, **options).fit(X, y)
    again = TorchTokenClassifier(max_epochs=2, **options).fit(X, y)
    state = first.state_tensors()
    assert state.keys() == again.state_tensors().keys()
    assert all(bool((state[k] == again.state_tensors()[k]).all()) for k in state)
    back = TorchTokenClassifier.from_state(state, json.loads(json.dumps(first.config())))
    held = sentences.vectors[150:]
    assert back.predict(held) == first.predict(held)
    assert all(np.array_equal(a, b) for a, b in zip(back.predict_proba(held), first.predict_proba(held)))


def test_a_sentence_view_is_refused_naming_its_granularity(ner_store):
    with pytest.raises(FeatureStoreError, match="granularity 'sentence'.*`granularity='token'`"):
        ner.train("sentences", head="logreg", store=ner_store)


def test_a_view_without_ner_tags_is_refused_listing_its_columns(ner_store):
    with pytest.raises(FeatureStoreError, match="no ner_tags column; it has: .*token_index.*`keep='ner_tags'`"):
        ner.train("untagged", head="logreg", store=ner_store)


def test_unknown_head_options_are_refused_listing_the_valid_ones(ner_store):
    with pytest.raises(FeatureStoreError, match="layers: not options of the mlp NER head; it takes: .*arch"):
        ner.train("train", head="mlp", layers=2, store=ner_store)


def test_document_split_is_seeded_and_keeps_documents_whole(sentences):
    train, test = ner.document_split(sentences.ids, 0.25, seed=0)
    assert np.array_equal(train, ner.document_split(sentences.ids, 0.25, seed=0)[0])
    docs = np.array([i.split("-")[0] for i in sentences.ids])
    assert not set(docs[train]) & set(docs[test]) and len(train) + len(test) == 300


@pytest.mark.parametrize("head", ["logreg", "mlp"])
def test_saved_heads_load_back_and_predict_the_same(trained, ner_store, head):
    from models.registry import load_model, save_model

    save_model(f"ner-{head}", trained[head], store=ner_store)
    model = load_model(f"ner-{head}", store=ner_store)
    inputs = [{"id": 1, "text": "Germany beat Italy in Rome on Sunday ."}, {"id": 2, "text": "..."}]
    assert ner.predict(model, inputs) == ner.predict(loaded(trained[head], ner_store), inputs)


def test_bio_decode_never_starts_an_entity_with_i():
    classes = ["B-PER", "I-LOC", "I-PER", "O"]
    proba = np.array([[0.1, 0.0, 0.6, 0.3], [0.0, 0.5, 0.4, 0.1]])  # argmax: I-PER I-LOC
    assert [classes[i] for i in bio_decode(proba, classes)] == ["B-PER", "I-PER"]


def test_dictionary_baseline_tags_each_word_with_its_most_frequent_training_tag_in_valid_bio():
    words = [["John", "Smith", "visited", "Paris"], ["Paris", "Hilton", "smiled"], ["Smith", "left", "Paris"]]
    tags = [["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "I-PER", "O"], ["B-PER", "O", "B-LOC"]]
    # Paris: B-LOC twice, B-PER once; Smith: I-PER once, B-PER once (a tie: the first seen wins)
    out = ner.dictionary_tags(words, tags, [["Smith", "Paris", "Smith", "John", "Smith", "Rome"]])
    assert out == [["B-PER", "B-LOC", "B-PER", "B-PER", "I-PER", "O"]]  # the first I-PER after O and after LOC repaired
    assert ner.bio_repair(["I-ORG", "I-ORG", "I-PER", "O", "I-LOC"]) == ["B-ORG", "I-ORG", "B-PER", "O", "B-LOC"]


@pytest.mark.parametrize("head", ["logreg", "mlp"])
def test_the_dictionary_baseline_is_scored_beside_the_head(trained, sentences, head):
    result = trained[head]
    baseline = result.report["baselines"]["dictionary"]
    # measured on these slices: 0.081 (a dictionary of 300 sentences knows few testa names; on all
    # of eng.train it scores 0.654), below both heads
    assert 0.04 < result.metrics["baseline_f1"] == baseline["f1"] < 0.2 < result.metrics["f1"]
    assert set(baseline["per_type"]) == {"PER", "LOC", "ORG", "MISC"}
    assert trained["logreg"].metrics["baseline_f1"] == trained["mlp"].metrics["baseline_f1"]  # same test sentences


def test_the_default_recipe_is_the_bilstm_crf_and_train_ner_reports_its_baseline(ner_store, cli):
    assert ner.DEFAULT_HEAD == "bilstm-crf"
    code, out, err = cli("train", "ner", "--view", "train", "--eval-view", "testa", "--option", "max_epochs=1",
                         "--name", "ner-default", "--store", ner_store.path, "--runner", "inline", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert 0.04 < summary["metrics"]["baseline_f1"] < 0.2 and 0.0 <= summary["metrics"]["f1"] <= 1.0
    from models.registry import load_model

    model = load_model("ner-default", store=ner_store)
    params = model.manifest["params"]
    assert (params["head"], params["arch"], params["crf"], params["hidden"]) == ("bilstm-crf", "bilstm", True, 128)
    assert model.head.module_.crf is not None
    mlp = ner.make_head("mlp", {})
    assert (mlp.arch, mlp.context, mlp.crf) == ("mlp", 1, False)  # the quick head, by name


def test_top_k_is_refused_for_a_model_that_does_not_rank(trained, ner_store):
    from models import tasks

    with pytest.raises(InvalidArgumentError, match="`top_k` applies to ranking models; model 'ner' is a ner model"):
        tasks.predict(loaded(trained["logreg"], ner_store), [{"id": "a", "text": "Paris"}], top_k=3)


def test_evaluate_scores_an_ner_head_on_a_token_view_beside_its_dictionary_baseline(ner_store, cli):
    from tests.conftest import snapshot

    root = ner_store.path
    code, out, err = cli("train", "ner", "--view", "train", "--eval-view", "testa", "--head", "logreg",
                         "--name", "ner-eval", "--store", root, "--runner", "inline", "--json")
    assert code == 0, err
    recorded = json.loads(out)["metrics"]
    code, out, err = cli("evaluate", "ner-eval", "--store", root, "--json")  # trained again on the sentences its manifest names
    assert code == 0, err
    check = json.loads(out)
    assert check["identical_metrics"] and check["identical_head"] and check["metrics"] == recorded, check
    code, out, err = cli("evaluate", "ner-eval", "--view", "testa", "--store", root, "--json")
    assert code == 0, err
    result = json.loads(out)
    # the same sentences the head was scored on at training: the same figures, head and baseline
    assert result["task"] == "ner" and result["rows"] == 150 and result["tokens"] > 1000
    assert result["metrics"]["f1"] == pytest.approx(recorded["f1"]) and result["metrics"]["f1"] > MIN_F1["logreg"]
    assert result["baselines"]["dictionary"]["f1"] == pytest.approx(recorded["baseline_f1"])
    saved = json.loads((root / "models" / "ner-eval" / "1" / "evaluations.json").read_text())
    assert [e["input"] for e in saved] == [result["input"]] and "table version" in result["input"]
    code, out, err = cli("evaluate", "ner-eval", "--view", "testa", "--store", root)
    assert code == 0 and "dictionary" in out and "f1_PER" in out, err

    before = snapshot(root)
    cases = [
        (("--view", "sentences"), "view 'sentences' has no table for model ner-eval's encoder word2vec-"),
        (("--view", "untagged"), "no ner_tags column"),
        (("--view", "nosuch"), "view 'nosuch' does not exist"),
        (("--view", "testa", "--input", str(root)), "give the new labelled data one way"),
        (("--view", "testa", "--queries", str(root), "--qrels", str(root)), "got --view and --queries/--qrels"),
    ]
    for args, message in cases:
        code, _, err = cli("evaluate", "ner-eval", *args, "--store", root)
        assert code == 2 and err.startswith("featurestore: error: ") and message in err and err.count("\n") == 1, (args, err)
    assert snapshot(root) == before
