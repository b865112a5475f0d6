"""The options several commands share, defined once: ``--store``, ``--encoder``, ``--backend``, ``--wait``, ``--quiet``, ``--json``."""

from __future__ import annotations

from typing import Any

import typer

__all__ = ["BACKEND_HELP", "BackendOpt", "EncoderOpt", "QuietOpt", "STORE_HELP", "StoreOpt", "WaitOpt", "json_option"]

STORE_HELP = "Store root (default: $FEATURESTORE_HOME or ~/.featurestore); local or s3://."
BACKEND_HELP = (
    "What runs the minilm/st: encoders (sentence and token vectors) and efficientnet-lite0 (minilm-int8: ONNX Runtime only): auto (default: ONNX Runtime on CPU when "
    "installed and its checked export is cached or can be made, else torch), torch or onnx. Sets $FEATURESTORE_ENCODER_BACKEND."
)

StoreOpt = typer.Option(None, "--store", help=STORE_HELP)
EncoderOpt = typer.Option(None, "--encoder", help="Encoder name or id (needed when the view has several).")
BackendOpt = typer.Option(None, "--backend", help=BACKEND_HELP)
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress on stderr (errors and warnings still show).")
WaitOpt = typer.Option(None, "--wait", help="Seconds to wait for the table's lock when another run holds it, "
                       "saying on stderr whom it waits for (default 0: stop at once). Sets $FEATURESTORE_LOCK_WAIT.")


def json_option(help: str) -> Any:  # noqa: A002 - typer's own keyword
    """``--json``, with what the command prints under it."""
    return typer.Option(False, "--json", help=help)
