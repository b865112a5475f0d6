"""``featurestore as-is``: prediction as is, a pretrained model's own output (no head trained)."""

from __future__ import annotations

from typing import List, Optional

import typer

from flows.cli.completion import complete_view
from flows.cli.options import QuietOpt, StoreOpt, json_option
from flows.cli.output import print_json, print_table, set_quiet


def as_is(
    model: str = typer.Argument(..., help="imagenet (EfficientNet-Lite0's ImageNet classes of images) or zero-shot (texts by cosine to label descriptions)."),
    inputs: List[str] = typer.Argument(..., help="Image paths (imagenet) or texts (zero-shot)."),
    label: Optional[List[str]] = typer.Option(None, "--label", help="zero-shot: NAME=DESCRIPTION (repeat for each label)."),
    view: Optional[str] = typer.Option(None, "--view", help="zero-shot: the view whose encoder reads the texts and descriptions.", autocompletion=complete_view),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="zero-shot: encoder name or id (when the view has several)."),
    k: Optional[int] = typer.Option(None, "-k", "--k", help="Labels to rank per input (imagenet: 5; zero-shot: all)."),
    store: Optional[str] = StoreOpt,
    json_out: bool = json_option("Print one JSON array."),
    quiet: bool = QuietOpt,
) -> None:
    """Predict with a pretrained model as it is: ImageNet top-k of images, or zero-shot labels of texts."""
    from featurestore.errors import SourceError
    from models import pretrained

    set_quiet(quiet)
    if model == "imagenet":
        if label or view:
            raise SourceError("--label and --view apply to zero-shot; imagenet takes image paths only")
        results = pretrained.imagenet(inputs, k=5 if k is None else k)
    elif model == "zero-shot":
        if view is None or not label:
            raise SourceError("zero-shot needs --view (whose encoder reads the texts) and --label NAME=DESCRIPTION for each label")
        labels = {}
        for pair in label:
            name, sep, description = pair.partition("=")
            if not sep or not name.strip() or not description.strip():
                raise SourceError(f"--label {pair!r}: expected NAME=DESCRIPTION, e.g. --label \"spam=an advert or a prize scam\"")
            labels[name.strip()] = description.strip()
        results = pretrained.zero_shot(inputs, labels, view=view, encoder=encoder, store=store, k=k)
    else:
        raise SourceError(f"unknown model {model!r} for prediction as is; use one of: {', '.join(pretrained.AS_IS)}")
    if json_out:
        print_json(results)
        return
    shown = [{"input": value, "label": r["label"], "score": r["score"], "top": ", ".join(f"{t['label']} {t['score']:.3f}" for t in r.get("top", [])),
              "error": r.get("error")} for value, r in zip(inputs, results)]
    print_table(f"{model} (as is)", shown, ["input", "label", "score", "top"] + (["error"] if any(r.get("error") for r in results) else []))


def register(app: typer.Typer) -> None:
    app.command("as-is")(as_is)
