"""Shell completion of the names a user types: views and models of the store the command names.

Typer calls these while the shell completes a word (``featurestore --install-completion`` sets it
up). They read the store's catalog, the folder tree (``--store`` when it comes before the word,
else ``$FEATURESTORE_HOME``), and never fail: a store that cannot be read completes nothing.
"""

from __future__ import annotations

import click


def _store(ctx: click.Context) -> str | None:
    value = (ctx.params or {}).get("store")
    return value if isinstance(value, str) else None


def complete_view(ctx: click.Context, incomplete: str) -> list[str]:
    """The store's view names that start with ``incomplete``."""
    from featurestore.errors import FeatureStoreError
    from featurestore.store import Store

    try:
        names = Store(_store(ctx)).views()
    except (FeatureStoreError, OSError):
        return []
    return [name for name in names if name.startswith(incomplete)]


def complete_model(ctx: click.Context, incomplete: str) -> list[str]:
    """The registered model names (and NAME:VERSION once a ':' is typed) that start with ``incomplete``."""
    from featurestore.errors import FeatureStoreError
    from models.registry import list_models

    try:
        rows = list_models(store=_store(ctx))
    except (FeatureStoreError, OSError):
        return []
    names = sorted({f"{r['name']}:{r['version']}" for r in rows} if ":" in incomplete else {r["name"] for r in rows})
    return [name for name in names if name.startswith(incomplete)]
