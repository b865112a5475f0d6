"""Which FAISS index fits a table: by row count and a memory budget, named by a factory string.

Every index the chooser names can be trained on the rows there are: IVF needs at least 39
training vectors per cell, PQ at least 2^8 per sub-quantizer codebook (FAISS warns below 39
times that). Under a budget no index fits, the error names the smallest budget that works.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from featurestore.errors import InvalidArgumentError, StoreError

IndexType = Literal["auto", "flat", "hnsw", "ivf", "ivfpq"]
INDEX_TYPES = ("auto", "flat", "hnsw", "ivf", "ivfpq")
EXACT_BELOW = 20_000  # below this, exact search is fast enough and has recall 1.0
TRAIN_PER_CELL = 64  # IVF training vectors per cell (FAISS wants >= 39)
MIN_PER_CENTROID = 39  # FAISS k-means warns with fewer training vectors per centroid
PQ_BITS = 8  # bits per PQ sub-quantizer code: 256 centroids each
PQ_MIN_ROWS = 2**PQ_BITS  # FAISS cannot train a PQ codebook on fewer vectors
PQ_GOOD_ROWS = MIN_PER_CENTROID * 2**PQ_BITS  # 9,984: the fewest the chooser trains a PQ on
HNSW_M = 32
ADD_CHUNK = 100_000  # vectors normalised and added to an index at a time
_UNITS = " KMGT"


def parse_bytes(text: str | int | None) -> int | None:
    """``2GB``, ``512MB``, ``1.5G`` or a plain number of bytes (K, M, G, T are powers of 1024).

    Whether a budget is large enough for a view's index is known only with its row count:
    :func:`choose_factory` refuses one that is too small and names the smallest that works.
    """
    if text is None:
        return None
    if isinstance(text, bool) or not isinstance(text, (int, str)):
        raise InvalidArgumentError(f"memory budget must look like 2GB, 512MB or a number of bytes. Got {text!r} instead.")
    if isinstance(text, int):
        value: float = text
    else:
        match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
        if not match:
            raise InvalidArgumentError(f"memory budget must look like 2GB, 512MB or a number of bytes. Got {text!r} instead.")
        value = float(match.group(1)) * 1024 ** _UNITS.index(match.group(2).upper() or " ")
    if value < 1:
        raise InvalidArgumentError(f"memory budget must be a positive size such as 2GB or 512MB. Got {text!r} instead.")
    return int(value)


def format_bytes(size: int) -> str:
    """The shortest budget string that :func:`parse_bytes` reads as at least ``size`` bytes: ``453KB``, ``1.4MB``."""
    unit = 0
    while unit < len(_UNITS) - 1 and size >= 1024 ** (unit + 1):
        unit += 1
    if unit == 0:
        return f"{size}B"
    scaled = size / 1024**unit
    shown = math.ceil(scaled * 10) / 10 if scaled < 100 else math.ceil(scaled)
    return f"{shown:g}{_UNITS[unit]}B"


def nlist_for(n: int) -> int:
    """IVF cells: about 4 * sqrt(n), a power of two, at least 16 and at most n / 39 (FAISS's training minimum)."""
    target = max(16, 4 * math.sqrt(max(n, 1)))
    nlist = 2 ** round(math.log2(target))
    return int(max(1, min(nlist, n // MIN_PER_CENTROID or 1)))


def pq_m(dim: int) -> int:
    """Sub-quantizers for PQ: the largest of 64, 48, 32 ... dividing dim with >= 4 dims each."""
    for m in (64, 48, 32, 24, 16, 12, 8, 4, 2, 1):
        if dim % m == 0 and dim // m >= 4:
            return m
    return 1


def train_rows(n: int, kind: str) -> int:
    """How many of ``n`` vectors train an index of ``kind``: TRAIN_PER_CELL per IVF cell and, for
    PQ, enough for its 256-centroid codebooks. Capped by n; 0 for indexes that need no training.
    The sample, not the table, sets the training time."""
    if kind in ("flat", "hnsw"):
        return 0
    wanted = TRAIN_PER_CELL * nlist_for(n)
    if kind == "ivfpq":
        wanted = max(wanted, PQ_GOOD_ROWS)
    return min(n, wanted)


def index_bytes(n: int, dim: int, kind: str) -> int:
    """Bytes an index of ``kind`` over ``n`` vectors of ``dim`` float32 holds (about its file size).

    flat: the vectors and their ids; hnsw: plus 2*M level-0 links per vector; ivf: plus the
    coarse centroids; ivfpq: a PQ code of ``pq_m(dim)`` bytes and an 8-bit refinement code of
    ``dim`` bytes per vector, the codebooks (256 centroids of every sub-vector) and the centroids.
    """
    row = dim * 4 + 8
    if kind == "flat":
        return n * row
    if kind == "hnsw":
        return n * (row + 2 * HNSW_M * 4 + 16)
    centroids = nlist_for(n) * dim * 4
    if kind == "ivf":
        return n * row + centroids
    return n * (pq_m(dim) + 8 + dim) + 2**PQ_BITS * dim * 4 + centroids


def build_overhead(n: int, dim: int, kind: str = "ivf") -> int:
    """Bytes a build holds besides the index: the training sample and one chunk being added
    (as read and normalised). The vectors themselves are streamed, never held whole."""
    row = dim * 4
    return train_rows(n, kind) * row + 2 * min(n, ADD_CHUNK) * row


def check_trainable(n: int, kind: str) -> None:
    """Refuse an index FAISS cannot train on ``n`` vectors (a PQ codebook needs 256 of them)."""
    if kind == "ivfpq" and n < PQ_MIN_ROWS:
        raise StoreError(
            f"an ivfpq index needs at least {PQ_MIN_ROWS} vectors to train its codebooks; the view has {n}. "
            "Use `index_type='flat'` (exact search) or `index_type='auto'`."
        )


def choose_factory(n: int, dim: int, *, index_type: IndexType = "auto", memory_budget: int | None = None) -> str:
    """The FAISS factory string for ``n`` vectors of ``dim`` under ``memory_budget`` bytes.

    auto: exact (``Flat``) for small tables whose vectors fit the budget; ``IVF<nlist>,Flat``
    while the raw vectors and the build's working set (:func:`build_overhead`) fit (IVF supports
    adding and removing vectors, which updates need); ``IVF<nlist>,PQ<m>,Refine(SQ8)`` when they
    do not (PQ codes re-ranked by 8-bit codes: about a quarter of the raw size), but only with
    the ``PQ_GOOD_ROWS`` its codebooks need to train well. An explicit type must fit the budget
    too. When nothing fits, a :class:`StoreError` names the smallest budget that does.
    """
    if index_type not in INDEX_TYPES:
        raise InvalidArgumentError(f"index type must be one of {', '.join(INDEX_TYPES)}. Got {index_type!r} instead.")
    if n <= 0 or dim <= 0:
        raise StoreError(f"an index needs at least one vector of at least one dimension. Got {n} vectors of {dim} dims.")
    kind = index_type if index_type != "auto" else _auto(n, dim, memory_budget)
    check_trainable(n, kind)
    if memory_budget is not None and index_bytes(n, dim, kind) > memory_budget:
        raise StoreError(
            f"memory budget {format_bytes(memory_budget)} is too small for a {kind} index of "
            f"{n:,} vectors of {dim} dims: it needs {format_bytes(index_bytes(n, dim, kind))}. "
            f"Pass `memory_budget='{format_bytes(index_bytes(n, dim, kind))}'` or more, or `index_type='auto'`."
        )
    return _factory(n, dim, kind)


def _auto(n: int, dim: int, budget: int | None) -> str:
    """The kind auto picks; raises with the smallest workable budget when none fits."""
    def fits(kind: str) -> bool:
        return budget is None or index_bytes(n, dim, kind) <= budget

    if n < EXACT_BELOW and fits("flat"):
        return "flat"
    if budget is None or index_bytes(n, dim, "ivf") * 1.1 + build_overhead(n, dim, "ivf") <= budget:
        return "ivf"
    if n >= PQ_GOOD_ROWS and fits("ivfpq"):
        return "ivfpq"
    candidates = (["flat"] if n < EXACT_BELOW else []) + (["ivfpq"] if n >= PQ_GOOD_ROWS else [])
    smallest = min(candidates, key=lambda kind: index_bytes(n, dim, kind))
    need = index_bytes(n, dim, smallest)
    raise StoreError(
        f"memory budget {format_bytes(budget)} is below what any index of {n:,} vectors of {dim} dims "
        f"needs: the smallest, {_factory(n, dim, smallest)}, takes {format_bytes(need)}. Pass "
        f"`memory_budget='{format_bytes(need)}'` or more."
    )


def _factory(n: int, dim: int, kind: str) -> str:
    if kind == "flat":
        return "Flat"
    if kind == "hnsw":
        return f"HNSW{HNSW_M}"
    if kind == "ivf":
        return f"IVF{nlist_for(n)},Flat"
    return f"IVF{nlist_for(n)},PQ{pq_m(dim)},Refine(SQ8)"


def kind_of(factory: str) -> str:
    """The index type a factory string was chosen as (``IVF4096,Flat`` -> ``ivf``)."""
    if factory.startswith("HNSW"):
        return "hnsw"
    if "PQ" in factory:
        return "ivfpq"
    return "ivf" if factory.startswith("IVF") else "flat"
