"""Entry point of ``featurestore``: builds the app and maps user errors to exit code 2."""

from __future__ import annotations

import sys

import typer

from flows.prefect_env import apply_defaults

app = typer.Typer(
    name="featurestore",
    help="Embeddings feature store: encode, store, search and train on frozen-encoder features.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion; views and models complete from the store
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from flows.cli import api, demo, encoders, export, index, info, materialize, pretrained, refresh, report, runs, train

    for module in (encoders, materialize, info, index, train, export, report, refresh, runs, demo, api, pretrained):
        module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns (and exits with) 0, 1 for failures, 2 for user errors."""
    apply_defaults()
    from featurestore.errors import FeatureStoreError
    from flows.cli.messages import cli_message

    _register()
    try:
        # typer handles usage errors itself (message + exit 2) and ends with SystemExit.
        app(args=argv, prog_name="featurestore")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except FeatureStoreError as exc:
        sys.stderr.write(f"featurestore: error: {cli_message(str(exc))}\n")
        code = 2
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
