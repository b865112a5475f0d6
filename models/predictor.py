"""Warm heads: registered models loaded once per process and predicted on raw inputs or stored ids.

The HTTP service's ``/v1/predict/{model}`` goes through :class:`Heads`. A model asked for without
a version follows the newest one: the registry folder is listed (cheaply, locally; at most once
per ``check_every`` seconds for a remote store) and a newer version is loaded beside the one in
use. Raw inputs go through :func:`models.tasks.predict`, which encodes them with the head's own
encoders and refuses one whose ``encoder_id`` differs, as ``featurestore predict`` does; stored
ids read the head's features from the views it was trained on through the warm search handles.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from featurestore.errors import NotFoundError, SourceError
from featurestore.serving import ENCODE_LOCK, searcher
from featurestore.store import Store
from models.base import LoadedModel

__all__ = ["Heads", "stored_features", "stored_texts"]

STORED_ID_TASKS = ("spam", "image", "classify")  # heads over one vector per entity, as the views store them


class Heads:
    """The loaded heads of one store (``max_models`` at most, least recently used dropped)."""

    def __init__(self, store: Store, *, check_every: float | None = None, max_models: int = 8) -> None:
        self.store = store
        self.check_every = check_every if check_every is not None else (1.0 if store.remote else 0.0)
        self.max_models = max_models
        self._models: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._newest: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def get(self, name: str, version: int | None = None) -> LoadedModel:
        """Model ``name`` at ``version`` (None: the newest, re-checked per call), loaded once."""
        from models.registry import load_model

        version = self._newest_version(name) if version is None else version
        with self._lock:
            loaded = self._models.get((name, version))
            if loaded is not None:
                self._models.move_to_end((name, version))
                return loaded
        loaded = load_model(name, version, store=self.store)  # refuses an unknown name or version, a tampered file
        with self._lock:
            self._models[(name, version)] = loaded
            while len(self._models) > max(self.max_models, 1):
                self._models.popitem(last=False)
        return loaded

    def _newest_version(self, name: str) -> int:
        from featurestore.store.schema import check_view_name
        from models.registry import LISTED, load_model, model_versions

        checked = self._newest.get(name)
        if checked is not None and time.monotonic() - checked[0] < self.check_every:
            return checked[1]
        versions = model_versions(self.store.fetch(f"models/{check_view_name(name)}", marker="manifest.json", names=LISTED))
        if not versions:
            load_model(name, store=self.store)  # raises the registry's own message (no such model, the models there)
        self._newest[name] = (time.monotonic(), versions[-1])
        return versions[-1]

    def predict(
        self,
        name: str,
        *,
        version: int | None = None,
        texts: Sequence[str] | None = None,
        images: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Predictions of one kind of input: raw ``texts``, image paths (``images``) or stored ``ids``;
        ``ood``: the share of them beyond the head's training-distance threshold (:func:`models.novelty.summary`)."""
        from models import novelty, tasks
        from models.classify import predict_features

        given = [n for n, v in (("texts", texts), ("images", images), ("ids", ids)) if v is not None]
        if len(given) != 1:
            raise SourceError(f"give exactly one kind of input (texts, images or ids). Got {', '.join(given) or 'none'}.")
        loaded = self.get(name, version)
        if ids is not None:
            X = stored_features(loaded, list(ids), store=self.store)
            predictions = predict_features(loaded, X, list(ids), texts=stored_texts(loaded, list(ids), store=self.store))
        else:
            field, values = ("path", images) if images is not None else ("text", texts)
            wanted = "image" if loaded.task == "image" else "text"
            if field != ("path" if wanted == "image" else "text"):
                raise SourceError(f"model {loaded.name} v{loaded.version} ({loaded.task}) takes {wanted}s; send {wanted}s, not {given[0]}")
            rows = [{"id": str(i), field: v} for i, v in enumerate(values or [])]
            with ENCODE_LOCK:  # the encoders are shared with the search handles of this process
                predictions = tasks.predict(loaded, rows)
        ood = novelty.summary(predictions, loaded.novelty)
        return {"model": loaded.name, "version": loaded.version, "task": loaded.task, "predictions": predictions, "ood": ood}


def stored_features(loaded: LoadedModel, ids: list[str], *, store: Store) -> np.ndarray:
    """``(len(ids), d) float32``: the head's features of stored entities, read from the views and
    encoder ids its manifest names (the same blocks, in the same order, as training used)."""
    if loaded.task not in STORED_ID_TASKS or (loaded.manifest.get("params") or {}).get("unfreeze_last"):
        raise SourceError(
            f"model {loaded.name} v{loaded.version} ({loaded.task}) does not predict from stored vectors; "
            f"send raw inputs (stored ids work for {', '.join(STORED_ID_TASKS)} heads on frozen features)"
        )
    blocks = []
    for entry in loaded.manifest.get("encoders", []):
        handle = searcher(entry["view"], entry["encoder_id"], store=store)
        found = handle.features(ids)
        if found["unknown"]:
            shown = ", ".join(repr(e) for e in found["unknown"][:5])
            raise NotFoundError(f"id(s) {shown} are not in view {entry['view']!r}, where model {loaded.name} reads its features")
        blocks.append(found["vectors"])
    return np.hstack(blocks).astype(np.float32, copy=False)



def stored_texts(loaded: LoadedModel, ids: list[str], *, store: Store) -> list[str] | None:
    """The raw texts of stored entities for a lexical or hybrid head (None for other heads): the
    kept ``text`` column of the view it was trained on. A view that keeps no text column cannot
    give them, which is an error that says to send the texts."""
    from models.lexical import TEXT_COLUMN, takes_text

    if not takes_text(loaded.head):
        return None
    entry = loaded.manifest["encoders"][0]
    found = searcher(entry["view"], entry["encoder_id"], store=store).features(ids)["found"]
    if any(TEXT_COLUMN not in row for row in found):
        raise SourceError(
            f"model {loaded.name} v{loaded.version} reads the raw text beside the stored vectors, and view {entry['view']!r} keeps no "
            f"{TEXT_COLUMN!r} column; send texts instead of ids (or materialize the view with `keep='{TEXT_COLUMN}'`)"
        )
    return [str(row[TEXT_COLUMN]) for row in found]
