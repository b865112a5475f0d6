"""L2 normalisation of embedding matrices: what the encoders, the index and the heads share.

Cosine similarity is the inner product of unit vectors, so a cosine index, a normalising
encoder and a head that compares vectors all scale rows to unit L2 norm the same way (rows of
norm 0 stay zero vectors).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np


def l2_normalise(x: np.ndarray, *, eps: float | None = None) -> np.ndarray:
    """Scale the rows of the 2-d float array ``x`` to unit L2 norm in place and return it.

    ``eps``: divide by ``max(norm, eps)`` instead, as ``torch.nn.functional.normalize(p=2,
    eps=1e-12)`` does (what the encoders that reproduce a torch model's output use).

    A float32 C-contiguous array goes through FAISS's ``normalize_L2`` where FAISS is installed
    (the ``index`` extra): one SIMD pass, ~1.5 us for a query where the numpy expression costs
    ~4 us, which a warm search pays on every call. Elsewhere numpy does it; both leave rows of
    norm 0 as they are, and no temporary as large as ``x`` is made (a training sample may be
    large enough that a second copy counts against an index's memory budget)."""
    if eps is not None:
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)
        return x
    faiss = _faiss()
    if faiss is not None and x.dtype == np.float32 and x.ndim == 2 and x.flags.c_contiguous and x.flags.writeable:
        faiss.normalize_L2(x)
        return x
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    norms[norms == 0] = 1.0
    x /= norms[:, None]
    return x


def squared_norms(x: np.ndarray) -> list[float]:
    """The squared L2 norm of each row of the 2-d array ``x``, computed in float32, as Python floats.

    A float32 C-contiguous array goes through FAISS's ``fvec_norms_L2sqr`` where FAISS is
    installed: the SIMD kernel a search runs anyway, where numpy's ``vecdot`` goes through the
    generalised-ufunc machinery (~3 us more per query on a warm search path, whose checks are
    its main cost beside the search). Elsewhere numpy computes the same sums. A norm past
    float32's range is ``inf`` on both paths."""
    faiss = _faiss()
    if faiss is not None and x.dtype == np.float32 and x.ndim == 2 and x.flags.c_contiguous:
        out = np.empty(x.shape[0], np.float32)
        faiss.fvec_norms_L2sqr(faiss.swig_ptr(out), faiss.swig_ptr(x), x.shape[1], x.shape[0])
        return out.tolist()
    return np.vecdot(x, x).tolist()


@functools.cache
def _faiss() -> Any:
    """The faiss module when it is installed, imported on first use; else None."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def prepare(vectors: np.ndarray, metric: str) -> np.ndarray:
    """float32, C-contiguous, L2-normalised for cosine (inner product on unit vectors); a copy."""
    x = np.array(vectors, dtype=np.float32, order="C", copy=True)
    return l2_normalise(x) if metric == "cosine" else x
