"""Which FAISS index fits a table: by row count and a memory budget, named by a factory string."""

from __future__ import annotations

import math
import re
from typing import Literal

from featurestore.errors import StoreError

IndexType = Literal["auto", "flat", "hnsw", "ivf", "ivfpq"]
INDEX_TYPES = ("auto", "flat", "hnsw", "ivf", "ivfpq")
EXACT_BELOW = 20_000  # below this, exact search is fast enough and has recall 1.0
TRAIN_PER_CELL = 64  # IVF training vectors per cell (FAISS wants >= 39)
ADD_CHUNK = 100_000  # vectors normalised and added to an index at a time


def parse_bytes(text: str | int | None) -> int | None:
    """``2GB``, ``512MB``, ``1.5G`` or a plain number of bytes."""
    if text is None or isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
    if not match:
        raise StoreError(f"memory budget must look like 2GB, 512MB or a number of bytes. Got {text!r} instead.")
    value, unit = float(match.group(1)), match.group(2).upper()
    return int(value * 1024 ** " KMGT".index(unit or " "))


def nlist_for(n: int) -> int:
    """IVF cells: about 4 * sqrt(n), a power of two, at least 16 and at most n / 39 (FAISS's training minimum)."""
    target = max(16, 4 * math.sqrt(max(n, 1)))
    nlist = 2 ** round(math.log2(target))
    return int(max(1, min(nlist, n // 39 or 1)))


def pq_m(dim: int) -> int:
    """Sub-quantizers for PQ: the largest of 64, 48, 32 ... dividing dim with >= 4 dims each."""
    for m in (64, 48, 32, 24, 16, 12, 8, 4, 2, 1):
        if dim % m == 0 and dim // m >= 4:
            return m
    return 1


def build_overhead(n: int, dim: int) -> int:
    """Bytes a build holds besides the index: the IVF training sample and one chunk being added
    (as read and normalised). The vectors themselves are streamed, never held whole."""
    row = dim * 4
    return min(n, TRAIN_PER_CELL * nlist_for(n)) * row + 2 * min(n, ADD_CHUNK) * row


def choose_factory(n: int, dim: int, *, index_type: IndexType = "auto", memory_budget: int | None = None) -> str:
    """The FAISS factory string for ``n`` vectors of ``dim`` under ``memory_budget`` bytes.

    The budget bounds the build's peak memory: the index plus :func:`build_overhead`. auto:
    exact (``Flat``) for small tables; ``IVF<nlist>,Flat`` while the raw vectors and the build's
    working set fit in the budget (IVF supports adding and removing vectors, which updates need);
    ``IVF<nlist>,PQ<m>,Refine(SQ8)`` when they do not (PQ codes re-ranked by 8-bit codes: a
    quarter of the raw size).
    """
    if index_type not in INDEX_TYPES:
        raise StoreError(f"index type must be one of {', '.join(INDEX_TYPES)}. Got {index_type!r} instead.")
    raw = n * dim * 4
    if index_type == "auto":
        if n < EXACT_BELOW and (memory_budget is None or raw <= memory_budget):
            index_type = "flat"
        elif memory_budget is None or raw * 1.1 + build_overhead(n, dim) <= memory_budget:
            index_type = "ivf"
        else:
            index_type = "ivfpq"
    if index_type == "flat":
        return "Flat"
    if index_type == "hnsw":
        return "HNSW32"
    if index_type == "ivf":
        return f"IVF{nlist_for(n)},Flat"
    return f"IVF{nlist_for(n)},PQ{pq_m(dim)},Refine(SQ8)"
