"""Embedding drift between two versions of a feature table.

Two numbers a team can alert on, per view and encoder: how far the mean vector moved (cosine
distance between the old and new means, and the L2 distance relative to the old mean's norm)
and how the distribution of vector norms changed (two-sample Kolmogorov-Smirnov statistic, plus
quantiles). A new data source, a changed preprocessing or a broken upstream feed moves them
long before a head's metrics drop. ``alert`` is True when the mean shift or the KS statistic
passes ``alert_level``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from featurestore.errors import StoreError
from featurestore.store import Store

__all__ = ["DEFAULT_ALERT", "embedding_drift"]

DEFAULT_ALERT = 0.1


def embedding_drift(
    view: str,
    encoder: str | None = None,
    *,
    store: Store | str | None = None,
    base: int | None = None,
    current: int | None = None,
    alert_level: float = DEFAULT_ALERT,
) -> dict[str, Any]:
    """Drift of ``view`` from version ``base`` (default: the one before ``current``) to ``current`` (default: newest)."""
    if not 0 < alert_level:
        raise StoreError(f"alert level must be positive; got {alert_level}")
    table = Store.of(store).resolve_table(view, encoder)
    newest = table.version()
    current = newest if current is None else current
    base = max(current - 1, 0) if base is None else base
    for name, v in (("base", base), ("current", current)):
        if not isinstance(v, int) or not 0 <= v <= (newest or 0):
            raise StoreError(f"{name} version {v!r} of view {view!r} does not exist (versions 0 to {newest})")
    old = table.latest([], as_of=base).vectors
    new = table.latest([], as_of=current).vectors
    if len(old) == 0 or len(new) == 0:
        raise StoreError(f"view {view!r} has no live rows at version {base if len(old) == 0 else current}; drift needs rows on both sides")
    return {"view": table.meta.view, "encoder_id": table.meta.encoder_id, "base_version": base, "current_version": current,
            **compare(old, new, alert_level)}


def compare(old: np.ndarray, new: np.ndarray, alert_level: float = DEFAULT_ALERT) -> dict[str, Any]:
    """The drift figures of two sets of vectors (rows)."""
    from scipy.stats import ks_2samp

    mean_old, mean_new = old.mean(axis=0, dtype=np.float64), new.mean(axis=0, dtype=np.float64)
    denom = float(np.linalg.norm(mean_old) * np.linalg.norm(mean_new))
    cosine = 1.0 - float(mean_old @ mean_new) / denom if denom > 0 else 0.0
    relative = float(np.linalg.norm(mean_new - mean_old) / max(np.linalg.norm(mean_old), 1e-12))
    norms_old, norms_new = np.linalg.norm(old, axis=1), np.linalg.norm(new, axis=1)
    ks = float(ks_2samp(norms_old, norms_new).statistic)
    quantiles = (0.05, 0.5, 0.95)
    return {
        "rows": [len(old), len(new)],
        "mean_shift_cosine": round(cosine, 6),
        "mean_shift_relative_l2": round(relative, 6),
        "norm_ks": round(ks, 6),
        "norm_quantiles": {
            "base": [round(float(q), 6) for q in np.quantile(norms_old, quantiles)],
            "current": [round(float(q), 6) for q in np.quantile(norms_new, quantiles)],
        },
        "alert_level": alert_level,
        "alert": bool(relative > alert_level or ks > alert_level),
    }
