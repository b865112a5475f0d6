"""``featurestore train``, ``predict``, ``evaluate`` and ``models``: heads on stored features."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from flows.cli.completion import complete_model, complete_view
from flows.cli.options import BackendOpt, EncoderOpt, QuietOpt, StoreOpt, json_option
from flows.cli.output import console, print_json, print_table, progress_bar, set_quiet, use_backend


def train(
    task: str = typer.Argument(..., help="spam, ner, ranking, image or classify."),
    view: str = typer.Option(..., "--view", help="The view whose features to train on.", autocompletion=complete_view),
    encoder: Optional[str] = EncoderOpt,
    name: Optional[str] = typer.Option(None, "--name", help="Model name in the registry (default: the task)."),
    labels: Optional[str] = typer.Option(None, "--labels", help="A kept column of the view, or a CSV/Parquet/JSONL file of entity_id,label[,event_timestamp]."),
    label_col: Optional[str] = typer.Option(None, "--label-col", help="The label column (default: label)."),
    head: Optional[str] = typer.Option(None, "--head", help="spam, classify: auto (default: the best by cross-validation), logistic, lexical, hybrid (classify: mlp, logistic-cv too); image: logistic-cv (default), logistic or mlp; ner: bilstm-crf (default), bilstm, mlp or logreg."),
    split: Optional[str] = typer.Option(None, "--split", help="stratified, text (grouped by exact text) or group:COLUMN."),
    folds: Optional[int] = typer.Option(None, "--folds", help="Cross-validation folds (default 5)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the split and the head."),
    extra_encoder: Optional[List[str]] = typer.Option(None, "--extra-encoder", help="Concatenate another encoder's features of the same view (repeatable)."),
    eval_view: Optional[str] = typer.Option(None, "--eval-view", autocompletion=complete_view, help="ner: the view to evaluate on (e.g. CoNLL eng.testa)."),
    queries: Optional[Path] = typer.Option(None, "--queries", help="ranking: the queries file (cran.qry, BEIR queries.jsonl, TSV or JSONL)."),
    qrels: Optional[Path] = typer.Option(None, "--qrels", help="ranking: the relevance judgments (cranqrel, BEIR qrels/*.tsv, TSV or JSONL)."),
    qrels_by: Optional[str] = typer.Option(None, "--qrels-by", help="ranking: the judgments name queries by their id (default) or by their position in the queries file (Cranfield's cranqrel)."),
    docs: Optional[Path] = typer.Option(None, "--docs", help="ranking: the documents' texts (default: the view's source)."),
    word2vec_view: Optional[str] = typer.Option(None, "--word2vec-view", autocompletion=complete_view, help="ranking: a word2vec view of the same documents."),
    unfreeze_last: Optional[int] = typer.Option(None, "--unfreeze-last", help="Fine-tune the encoder's last K layers with the head (image, spam, classify)."),
    option: Optional[List[str]] = typer.Option(None, "--option", help="A head parameter KEY=VALUE, VALUE read as JSON when it parses (e.g. arch=bilstm, crf=true); repeatable."),
    strict: bool = typer.Option(False, "--strict", help="Labels for ids missing from the view are an error."),
    runner: str = typer.Option("local", "--runner", help="local (a Prefect flow) or inline (no Prefect)."),
    store: Optional[str] = StoreOpt,
    json_out: bool = json_option("Print the model name, version and metrics as JSON."),
    quiet: bool = QuietOpt,
) -> None:
    """Train a head on a view's stored features, evaluate it, and register it."""
    from flows.runner import STEP_RUNNERS, check_runner
    from models.tasks import check_train

    set_quiet(quiet)
    check_runner(runner, STEP_RUNNERS)
    options = {
        "labels": labels, "label_col": label_col, "head": head, "split": split, "n_splits": folds, "seed": seed,
        "extra_encoders": extra_encoder or None, "eval_view": eval_view, "queries": queries and str(queries),
        "qrels": qrels and str(qrels), "docs": docs and str(docs), "word2vec_view": word2vec_view,
        "unfreeze_last": unfreeze_last, "strict": strict or None, "qrels_by": qrels_by,
    }
    options.update(_head_options(option or []))
    options = check_train(task, view, encoder, name or task, options, store=store)  # before Prefect starts: a mistake is a quick line
    from flows.prefect_api import quiet_user_errors
    from flows.train import train as train_head

    quiet_user_errors()
    with progress_bar(f"train {task}", unit="steps") as update:
        summary = train_head(task, view, encoder, store=store, name=name, options=options, runner=runner, progress=update)
    if json_out:
        print_json(summary.to_dict())
        return
    metrics = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.metrics.items())
    console().print(f"{summary.name} v{summary.version} ({summary.task}, {summary.rows} rows): {metrics}")


def predict(
    model: str = typer.Argument(..., help="Model name (NAME or NAME:VERSION; default the newest version).", autocompletion=complete_model),
    inputs: Optional[List[str]] = typer.Argument(None, help="Texts (or image paths) to predict."),
    input_file: Optional[Path] = typer.Option(None, "--input", help="A CSV/TSV/JSONL/Parquet file, or a text file of one input per line."),
    id_col: Optional[str] = typer.Option(None, "--id-col", help="The id column of --input (default: id, else the row number)."),
    text_col: Optional[str] = typer.Option(None, "--text-col", help="The input column of --input (default: text, or path for images)."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="ranking: the documents to return per query, best first, with their scores (default 10)."),
    store: Optional[str] = StoreOpt,
    backend: Optional[str] = BackendOpt,
    json_out: bool = json_option("Print one JSON array (each item with ood and ood_distance)."),
    quiet: bool = QuietOpt,
) -> None:
    """Predict with a registered model: raw inputs are encoded with the model's own encoder.

    Each input also gets ood_distance (to its nearest training row) and ood (beyond the training threshold?).
    """
    from featurestore.errors import SourceError
    from models import novelty, registry, tasks

    set_quiet(quiet)
    use_backend(backend)
    if bool(inputs) == bool(input_file):
        raise SourceError("give the inputs as arguments or with --input FILE (one of the two)")
    name, version = _model_ref(model)
    loaded = registry.load_model(name, version, store=store)
    field = "path" if loaded.task == "image" else "text"
    rows = _read_inputs(input_file, id_col, text_col or field, field) if input_file else [{"id": str(i), field: v} for i, v in enumerate(inputs or [])]
    results = tasks.predict(loaded, rows, top_k=top_k)
    ood = novelty.summary(results, loaded.novelty)
    if ood["warning"]:
        sys.stderr.write(f"featurestore: warning: {ood['warning']}\n")
    if json_out:
        print_json(results)
        return
    columns = ["id", "label", "score"] + [c for c in ("entities", "documents", "error") if any(c in r for r in results)]
    columns += ["ood", "ood_distance"] if ood["recorded"] else []
    print_table(f"{loaded.name} v{loaded.version} ({loaded.task})", [_short(r) for r in results], columns)
    if ood["recorded"] and ood["inputs"]:
        console().print(
            f"{ood['beyond']} of {ood['inputs']} inputs ({ood['share']:.1%}) are beyond the training data's threshold "
            f"(cosine distance {ood['threshold']:.3f} to the nearest training row; expected about {ood['expected_share']:.0%})"
        )


def evaluate(
    model: str = typer.Argument(..., help="Model name (NAME or NAME:VERSION).", autocompletion=complete_model),
    input_file: Optional[Path] = typer.Option(None, "--input", help="New labelled data to score the head on: CSV/TSV/JSONL/Parquet with text and label columns, the SMSSpamCollection layout (label<TAB>text), or a folder of class folders for image heads."),
    fmt: Optional[str] = typer.Option(None, "--format", help="The format of --input when its name does not say: csv, tsv, jsonl, parquet, sms."),
    id_col: Optional[str] = typer.Option(None, "--id-col", help="The id column of --input (default: the line number)."),
    text_col: Optional[str] = typer.Option(None, "--text-col", help="The text column of --input (default: text)."),
    label_col: str = typer.Option("label", "--label-col", help="The label column of --input."),
    view: Optional[str] = typer.Option(None, "--view", help="ner: a token view of new labelled sentences (a CoNLL file materialized with the head's encoder and --granularity token).", autocompletion=complete_view),
    queries: Optional[Path] = typer.Option(None, "--queries", help="ranking: new queries (Cranfield cran.qry, BEIR queries.jsonl, TSV or JSONL), judged by --qrels."),
    qrels: Optional[Path] = typer.Option(None, "--qrels", help="ranking: the judgments of --queries (cranqrel, BEIR qrels/*.tsv, TSV or JSONL)."),
    qrels_by: str = typer.Option("id", "--qrels-by", help="ranking: the judgments name queries by id or by position in --queries."),
    store: Optional[str] = StoreOpt,
    json_out: bool = json_option("Print one JSON object: metrics, baselines, rows (or the reproduction check)."),
    quiet: bool = QuietOpt,
) -> None:
    """Score a model on new labelled data (--input) beside its baselines; without --input, train it
    again from its manifest to check it reproduces exactly."""
    from featurestore.errors import SourceError
    from models import registry, tasks

    set_quiet(quiet)
    name, version = _model_ref(model)
    given = [flag for flag, value in (("--input", input_file), ("--view", view), ("--queries/--qrels", queries or qrels)) if value is not None]
    if len(given) > 1:
        raise SourceError(f"give the new labelled data one way: --input FILE, --view TOKEN_VIEW (ner) or --queries and --qrels (ranking); got {' and '.join(given)}")
    if (queries is None) != (qrels is None):
        raise SourceError("a ranking head is evaluated on --queries FILE and --qrels FILE together")
    if qrels_by not in ("id", "position"):
        raise SourceError(f"--qrels-by must be one of: id, position. Got {qrels_by!r} instead.")
    if given:
        _evaluate_input(store, registry.load_model(name, version, store=store), input_file, fmt, id_col, text_col, label_col, json_out,
                        view, (queries, qrels, qrels_by) if queries is not None else None)
        return
    loaded = registry.load_model(name, version, store=store)
    with progress_bar(f"evaluate {loaded.name} v{loaded.version}", unit="steps") as update:
        check = tasks.reproduce(loaded, progress=update, store=store)
    if json_out:
        print_json(check.to_dict())
        return
    rows = [{"metric": k, "recorded": _fmt(v), "again": _fmt(check.metrics.get(k))} for k, v in check.recorded_metrics.items()]
    print_table(f"{loaded.name} v{loaded.version} ({loaded.task})", rows, ["metric", "recorded", "again"])
    console().print(
        f"identical metrics: {check.identical_metrics}, identical head bytes: {check.identical_head} "
        f"(trained again in {check.seconds:.1f} s)"
    )


def _evaluate_input(store: Optional[str], loaded: object, path: Optional[Path], fmt: Optional[str], id_col: Optional[str],
                    text_col: Optional[str], label_col: str, json_out: bool, view: Optional[str] = None,
                    judged: Optional[tuple[Path, Path, str]] = None) -> None:
    from models.evaluation import evaluate as evaluate_input
    from models.evaluation import evaluate_ner, evaluate_ranking

    if judged is not None:
        result = evaluate_ranking(loaded, judged[0], judged[1], qrels_by=judged[2], store=store)
    elif view is not None:
        result = evaluate_ner(loaded, view, store=store)
    else:
        result = evaluate_input(loaded, path, store=store, format=fmt, id_col=id_col, text_col=text_col, label_col=label_col)
    path = path if path is not None else result.input
    if json_out:
        print_json(result.to_dict())
        return
    shown = [k for k, v in result.metrics.items() if isinstance(v, float)]
    baselines = {k: v for k, v in result.baselines.items() if "skipped" not in v}
    rows = [{"metric": k, "head": _fmt(result.metrics[k]), **{b: _fmt(v.get(k, "")) for b, v in baselines.items()}} for k in shown]
    print_table(f"{result.name} v{result.version} ({result.task}) on {result.rows} new rows of {path}", rows,
                ["metric", "head", *baselines])
    for name, value in result.baselines.items():
        if "skipped" in value:
            console().print(f"baseline {name} skipped: {value['skipped']}")
    if result.skipped:
        console().print(f"{len(result.skipped)} input(s) not predicted (first: {result.skipped[0]['error']})")


def models(
    store: Optional[str] = StoreOpt,
    json_out: bool = json_option("Print one JSON array: a row per model version."),
    quiet: bool = QuietOpt,
) -> None:
    """List the registered models: name, version, task, rows, headline metrics."""
    from models.registry import headline_metrics, list_models

    set_quiet(quiet)
    rows = list_models(store=store)
    if json_out:
        print_json(rows)
        return
    shown = [{**r, "metrics": ", ".join(f"{k} {_fmt(v)}" for k, v in headline_metrics(r.get("metrics", {}), 4).items())} for r in rows]
    print_table("models", shown, ["name", "version", "task", "rows", "metrics", "created_at"])


def _head_options(pairs: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` pairs; a VALUE that parses as JSON (numbers, true/false, lists) is taken as such."""
    import json

    from featurestore.errors import FeatureStoreError

    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise FeatureStoreError(f"--option {pair!r}: expected KEY=VALUE, e.g. --option arch=bilstm")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def _model_ref(ref: str) -> tuple[str, int | None]:
    from featurestore.errors import FeatureStoreError

    name, _, version = ref.partition(":")
    if version and not version.isdigit():
        raise FeatureStoreError(f"model {ref!r}: the version after ':' must be a number")
    return name, int(version) if version else None


def _read_inputs(path: Path, id_col: str | None, value_col: str, field: str) -> list[dict[str, str]]:
    """Inputs ``{"id", field}`` from a table file's ``value_col`` (pandas) or a plain text file (one per line)."""
    import pandas as pd

    from featurestore.errors import SourceError

    if not path.is_file():
        raise SourceError(f"input file not found: {path}")
    readers = {".csv": lambda: pd.read_csv(path, dtype=str), ".tsv": lambda: pd.read_csv(path, sep="\t", dtype=str),
               ".jsonl": lambda: pd.read_json(path, lines=True, dtype=False), ".parquet": lambda: pd.read_parquet(path)}
    if path.suffix.lower() not in readers:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [{"id": str(i), field: line} for i, line in enumerate(lines)]
    try:
        frame = readers[path.suffix.lower()]()
    except (ValueError, OSError) as exc:
        raise SourceError(f"cannot read {path}: {exc}") from None
    if value_col not in frame.columns:
        raise SourceError(f"{path} has no column {value_col!r} (columns: {', '.join(map(str, frame.columns))}); pass --text-col")
    if id_col is not None and id_col not in frame.columns:
        raise SourceError(f"{path} has no column {id_col!r} (columns: {', '.join(map(str, frame.columns))}); pass --id-col")
    ids = frame[id_col or "id"].astype(str) if (id_col or "id") in frame.columns else pd.Series(range(len(frame))).astype(str)
    return [{"id": i, field: str(v)} for i, v in zip(ids, frame[value_col])]


def _short(row: dict) -> dict:
    if "entities" in row:
        row = {**row, "entities": "; ".join(f"{e['text']} ({e['type']})" for e in row["entities"])}
    if "documents" in row:
        row = {**row, "documents": "; ".join(f"{d['entity_id']} ({d['score']:.3f})" for d in row["documents"])}
    distance = row.get("ood_distance")
    return {**row, "score": _fmt(row.get("score")), "ood_distance": None if distance is None else _fmt(distance)}


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("predict")(predict)
    app.command("evaluate")(evaluate)
    app.command("models")(models)
