"""Text heads on real MiniLM features of SMS messages: the choice among dense, lexical and hybrid
heads on the training set's folds, hybrid heads saved and loaded through skops and predicted from
raw text, and ``evaluate --input`` on held-out messages beside the TF-IDF baselines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from featurestore.materialization import materialize
from featurestore.sources import TextSource
from flows.train import train_and_register
from models import headfiles, registry, tasks
from tests.conftest import SMS, assert_user_error, need, snapshot

TRAIN_ROWS = 300
HELD_OUT = (300, 450)  # lines of SMSSpamCollection the heads never see


@pytest.fixture(scope="module")
def text_store(tmp_path_factory) -> dict[str, Path]:
    """A minilm view of the first 300 SMS messages (label kept, texts from the source), a spam head
    of the default choice ('spam' v1), an explicit hybrid head ('hybrid' v1), and 150 later messages."""
    need(SMS)
    root = tmp_path_factory.mktemp("text-heads")
    lines = SMS.read_text(encoding="utf-8").splitlines()
    source = root / "SMSSpamCollection"
    source.write_text("\n".join(lines[:TRAIN_ROWS]) + "\n", encoding="utf-8")
    (root / "held-out").mkdir()
    held_out = root / "held-out" / "SMSSpamCollection"  # the sms layout, told by the name
    held_out.write_text("\n".join(lines[slice(*HELD_OUT)]) + "\n", encoding="utf-8")
    store = root / "store"
    materialize(TextSource(str(source), format="sms", id_col="@line", keep=("label",)), "sms", "minilm", store=store, encoder_options={"device": "cpu"})
    train_and_register("spam", "sms", store=str(store), name="spam", options={"n_splits": 3})
    train_and_register("spam", "sms", store=str(store), name="hybrid", options={"n_splits": 3, "head": "hybrid"})
    return {"store": store, "held_out": held_out, "root": root}


def test_the_default_head_is_chosen_by_cross_validation_and_the_choice_is_recorded(text_store):
    loaded = registry.load_model("spam", store=text_store["store"])
    choice = loaded.manifest["head_choice"]
    assert (choice["asked"], choice["metric"]) == ("auto", "f1")
    assert [c["head"] for c in choice["candidates"]] == ["logistic", "lexical", "hybrid"]
    scores = {c["head"]: c["f1"] for c in choice["candidates"]}
    assert choice["chosen"] == max(scores, key=scores.get)  # a tie goes to the earlier: max() keeps the first
    assert loaded.manifest["metrics"]["f1"] == scores[choice["chosen"]]
    assert "highest cross-validated f1 on the same folds" in choice["reason"]
    report = json.loads((loaded.path / "report.json").read_text())
    assert set(report["baselines"]) == {"tfidf+logistic", "char-tfidf+logistic"}
    assert loaded.manifest["metrics"]["baseline_char_f1"] == report["baselines"]["char-tfidf+logistic"]["f1"]
    assert report["head_choice"] == choice


def test_a_hybrid_head_loads_through_skops_with_the_trusted_types_and_predicts_raw_text(text_store, cli):
    from sklearn.compose import ColumnTransformer

    from models.lexical import takes_text

    store = text_store["store"]
    loaded = registry.load_model("hybrid", store=store)  # refuses any type outside SKOPS_TYPES
    assert loaded.manifest["head_choice"]["chosen"] == "hybrid" and takes_text(loaded.head)
    assert isinstance(loaded.head[0], ColumnTransformer) and [name for name, *_ in loaded.head[0].transformers] == ["dense", "word", "char"]
    assert headfiles.skops_refusals((loaded.path / "head.skops").read_bytes()) == []
    prize = "URGENT! You have won a 1 week FREE membership in our £100,000 Prize Jackpot! Txt CLAIM to 81010"
    out = tasks.predict(loaded, [{"id": "a", "text": prize}, {"id": "b", "text": "Ok, see you at home tonight"}])
    assert [(o["id"], o["label"]) for o in out] == [("a", "spam"), ("b", "ham")]
    code, stdout, err = cli("predict", "hybrid:1", prize, "Ok, see you at home tonight", "--store", store, "--json")
    assert code == 0, err
    assert [r["label"] for r in json.loads(stdout)] == ["spam", "ham"]


def test_the_service_path_predicts_texts_and_refuses_stored_ids_without_a_kept_text(text_store):
    from featurestore.errors import SourceError
    from featurestore.store import Store
    from models.predictor import Heads

    heads = Heads(Store(text_store["store"]))
    answer = heads.predict("hybrid", texts=["WINNER!! claim your free prize, call 09061701461 now"])
    assert answer["predictions"][0]["label"] == "spam"
    with pytest.raises(SourceError, match="keeps no 'text' column; send texts instead of ids"):
        heads.predict("hybrid", ids=["1"])


def test_evaluate_scores_held_out_messages_beside_the_baselines_and_the_report_shows_it(text_store, cli, tmp_path):
    store = text_store["store"]
    code, out, err = cli("evaluate", "spam:1", "--input", text_store["held_out"], "--store", store, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (result["name"], result["version"], result["task"], result["rows"]) == ("spam", 1, "spam", HELD_OUT[1] - HELD_OUT[0])
    assert set(result["metrics"]) >= {"f1", "precision", "recall", "roc_auc", "average_precision", "accuracy"}
    assert set(result["baselines"]) == {"tfidf+logistic", "char-tfidf+logistic"}
    for scores in [result["metrics"], *result["baselines"].values()]:
        assert 0.5 < scores["f1"] <= 1 and 0.8 < scores["roc_auc"] <= 1
    assert sum(map(sum, result["metrics"]["confusion_matrix"])) == result["rows"]
    saved = json.loads((store / "models" / "spam" / "1" / "evaluations.json").read_text())
    assert [e["input_sha256"] for e in saved] == [result["input_sha256"]]
    registry.load_model("spam", 1, store=store)  # the added file is not a tampered model file
    code, out, err = cli("evaluate", "spam:1", "--input", text_store["held_out"], "--store", store)
    assert code == 0 and "char-tfidf+logistic" in out and "roc_auc" in out, err
    assert len(json.loads((store / "models" / "spam" / "1" / "evaluations.json").read_text())) == 1  # same input: replaced
    page = tmp_path / "report.html"
    code, _, err = cli("report", "--out", page, "--store", store)
    assert code == 0, err
    html = page.read_text()
    assert "evaluated on new data" in html and str(text_store["held_out"]) in html and "highest cross-validated f1" in html
    evaluations = store / "models" / "spam" / "1" / "evaluations.json"
    kept = evaluations.read_bytes()
    try:  # a damaged evaluations.json is data: the model still loads, the report says so
        evaluations.write_text('{"not": [json')
        registry.load_model("spam", 1, store=store)
        code, _, err = cli("report", "--out", page, "--store", store)
        assert code == 0 and "evaluations.json cannot be read" in page.read_text(), err
    finally:
        evaluations.write_bytes(kept)


def test_classify_on_a_text_view_chooses_by_macro_f1_beside_both_baselines(text_store):
    result = tasks.train("classify", "sms", n_splits=3, store=text_store["store"])
    assert result.choice["metric"] == "macro_f1" and [c["head"] for c in result.choice["candidates"]] == ["logistic", "lexical", "hybrid"]
    assert result.report["macro_f1"] == max(c["macro_f1"] for c in result.choice["candidates"])
    assert {"baseline_macro_f1", "baseline_char_macro_f1"} <= set(result.metrics)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown-model", "no model 'nosuch'"),
        ("no-label-column", "has no label column 'label' (columns: msg, body); pass --label-col"),
        ("unknown-label", "label(s) 'phishing' are not classes of model spam v1 (its classes: ham, spam)"),
        ("blank-label", "line 3 has no label in column 'label'"),
        ("empty", "holds no labelled inputs"),
        ("plain-text", "has no label column 'label' (columns: text)"),
        ("missing-file", "input file not found"),
    ],
)
def test_evaluate_bad_input_is_one_line_exit_2_and_the_store_is_unchanged(text_store, cli, tmp_path, case, message):
    store = text_store["store"]
    files = {
        "no-label-column": lambda: _write(tmp_path / "new.csv", "msg,body\n1,hello there\n"),
        "unknown-label": lambda: _write(tmp_path / "new.csv", "label,text\nspam,WIN NOW\nphishing,your bank account\n"),
        "blank-label": lambda: _write(tmp_path / "new.csv", "label,text\nham,hi\n,no label here\n"),
        "empty": lambda: _write(tmp_path / "new.csv", "label,text\n"),
        "plain-text": lambda: _write(tmp_path / "new.txt", "hello\n"),
        "missing-file": lambda: tmp_path / "nope.csv",
    }
    path = files.get(case, lambda: text_store["held_out"])()
    model = "nosuch" if case == "unknown-model" else "spam:1"
    before = snapshot(store)
    assert_user_error(cli("evaluate", model, "--input", path, "--store", store), message)
    assert snapshot(store) == before


def test_evaluate_an_image_head_on_a_folder_of_class_folders(tmp_path, cli):
    import shutil

    from featurestore import settings
    from featurestore.sources import ImageSource

    photos = settings.data_dir() / "images" / "hymenoptera_train"
    need(photos)
    for kind in ("ants", "bees"):
        files = sorted((photos / kind).iterdir())
        for part, chosen in (("train", files[:12]), ("new", files[12:17])):
            (tmp_path / part / kind).mkdir(parents=True)
            for file in chosen:
                shutil.copy(file, tmp_path / part / kind / file.name)
    store = tmp_path / "store"
    materialize(ImageSource(str(tmp_path / "train")), "bees", "efficientnet-lite0", store=store, encoder_options={"device": "cpu"})
    train_and_register("image", "bees", store=str(store), name="bees", options={"n_splits": 3})
    code, out, err = cli("evaluate", "bees", "--input", tmp_path / "new", "--store", store, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (result["task"], result["rows"], set(result["baselines"])) == ("image", 10, {"majority"})
    assert result["metrics"]["accuracy"] >= 0.7 and result["baselines"]["majority"]["accuracy"] == 0.5
    assert_user_error(cli("evaluate", "bees", "--input", tmp_path / "new" / "ants", "--store", store), "has no class folders holding images")
