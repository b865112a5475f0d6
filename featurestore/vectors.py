"""L2 normalisation of embedding matrices: what the encoders, the index and the heads share.

Cosine similarity is the inner product of unit vectors, so a cosine index, a normalising
encoder and a head that compares vectors all scale rows to unit L2 norm the same way (rows of
norm 0 stay zero vectors).
"""

from __future__ import annotations

import numpy as np


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Scale the rows of the 2-d float array ``x`` to unit L2 norm in place and return it.

    No temporary as large as ``x`` is made (a training sample may be large enough that a second
    copy counts against an index's memory budget)."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    norms[norms == 0] = 1.0
    x /= norms[:, None]
    return x


def prepare(vectors: np.ndarray, metric: str) -> np.ndarray:
    """float32, C-contiguous, L2-normalised for cosine (inner product on unit vectors); a copy."""
    x = np.array(vectors, dtype=np.float32, order="C", copy=True)
    return l2_normalise(x) if metric == "cosine" else x
