"""Entry point of ``featurestore``: builds the app and maps user errors to exit code 2."""

from __future__ import annotations

import sys

import click
import typer

from flows.prefect_env import apply_defaults

app = typer.Typer(
    name="featurestore",
    help="Embeddings feature store: encode, store, search and train on frozen-encoder features.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from flows.cli import demo, encoders, info, materialize

    for module in (encoders, materialize, info, demo):
        module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns (and exits with) 0, 1 for failures, 2 for user errors."""
    apply_defaults()
    from featurestore.errors import FeatureStoreError

    _register()
    try:
        app(args=argv, prog_name="featurestore", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.UsageError as exc:
        exc.show()
        code = 2
    except click.Abort:
        sys.stderr.write("featurestore: aborted\n")
        code = 130
    except FeatureStoreError as exc:
        sys.stderr.write(f"featurestore: error: {exc}\n")
        code = 2
    else:
        code = 0
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
