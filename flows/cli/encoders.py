"""``featurestore encoders``: the encoders this installation can use."""

from __future__ import annotations

import typer

from flows.cli.options import QuietOpt, json_option
from flows.cli.output import print_json, print_table, set_quiet


def encoders(
    json_out: bool = json_option("Print one JSON array."),
    quiet: bool = QuietOpt,
) -> None:
    """List encoders: name, encoder_id, dim, modality and where the weights come from."""
    set_quiet(quiet)
    from featurestore.encoders import list_encoders

    rows = list_encoders()
    if json_out:
        print_json(rows)
    else:
        print_table("encoders", rows, ["name", "encoder_id", "dim", "modality", "metric", "source", "error"])


def register(app: typer.Typer) -> None:
    app.command("encoders")(encoders)
