"""Taking features to other tools: a view's state as plain Parquet and ``.npy`` files.

The layout is the one embedding-reader and autofaiss read (and clip-retrieval writes)::

    <out>/emb/0000.npy           float32 (rows, dim), row-aligned with
    <out>/metadata/0000.parquet  entity_id + the kept columns
    <out>/parquet/0000.parquet   entity_id + kept columns + ``embedding`` (list<float32>)
    <out>/export.json            view, encoder_id, table version, dim, metric, rows, files

``EmbeddingReader(out + "/emb", file_format="parquet_npy", metadata_folder=out + "/metadata")``,
``EmbeddingReader(out + "/parquet", file_format="parquet", embedding_column="embedding")`` and
``autofaiss build_index --embeddings out/emb`` read it as it is. Files hold at most
``rows_per_file`` rows each, so a large view never has to fit in one array on the reading side.
The export is written to a temporary folder beside ``out`` and renamed into place: a crash
leaves no half export.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.errors import StoreError
from featurestore.params import positive_int
from featurestore.store import Store
from featurestore.store.table import AsOf

__all__ = ["export_view"]


def export_view(
    view: str,
    encoder: str | None = None,
    *,
    out: str | os.PathLike[str],
    store: Store | str | None = None,
    as_of: AsOf = None,
    rows_per_file: int = 1_000_000,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the latest (or ``as_of``) state of ``view`` to ``out``; returns the export.json content."""
    positive_int("rows_per_file", rows_per_file)
    target = Path(out)
    if target.exists() and not (target.is_dir() and not any(target.iterdir())) and not overwrite:
        raise StoreError(f"{target} already exists and is not an empty folder; choose another `out` or pass `overwrite=True`")
    table = Store.of(store).resolve_table(view, encoder)
    frame = table.latest(None, as_of=as_of)
    meta = table.meta
    if len(frame) == 0:
        raise StoreError(f"view {view!r} ({meta.encoder_id}) has no live rows{'' if as_of is None else f' as of {as_of}'}; nothing to export")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        files = _write(tmp, frame, rows_per_file)
        manifest = {
            "view": meta.view,
            "encoder_id": meta.encoder_id,
            "encoder": meta.encoder_ref or meta.encoder_name,
            "granularity": meta.granularity,
            "metric": meta.metric,
            "dim": meta.dim,
            "table_version": frame.version,
            "rows": len(frame),
            "columns": ["entity_id", *frame.columns.column_names],
            "files": files,
        }
        (tmp / "export.json").write_text(json.dumps(manifest, indent=2, default=str))
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _write(folder: Path, frame: Any, rows_per_file: int) -> list[str]:
    """The three aligned folders, ``rows_per_file`` rows a file; the file stems, in order."""
    for sub in ("emb", "metadata", "parquet"):
        (folder / sub).mkdir(parents=True)
    n, dim = frame.vectors.shape
    stems = []
    for number, start in enumerate(range(0, n, rows_per_file)):
        stop = min(start + rows_per_file, n)
        stem = f"{number:04d}"
        vectors = np.ascontiguousarray(frame.vectors[start:stop], dtype=np.float32)
        np.save(folder / "emb" / f"{stem}.npy", vectors)
        metadata = frame.columns.slice(start, stop - start)
        metadata = metadata.add_column(0, "entity_id", pa.array(frame.ids[start:stop].tolist(), pa.string()))
        pq.write_table(metadata, folder / "metadata" / f"{stem}.parquet")
        # a plain list<float32> column: what pandas and embedding-reader's parquet format expect
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim).cast(pa.list_(pa.float32()))
        pq.write_table(metadata.append_column("embedding", embedding), folder / "parquet" / f"{stem}.parquet")
        stems.append(stem)
    return stems
