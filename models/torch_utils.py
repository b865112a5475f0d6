"""Torch plumbing shared by the torch heads (the NER tagger, fine-tuning): import, seeding, batching."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from featurestore.errors import DependencyError


def require_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise DependencyError("the torch heads need torch: pip install 'featurestore[text,models]'") from None
    return torch


@contextlib.contextmanager
def seeded(torch: Any, seed: int) -> Iterator[None]:
    """Seed torch for one fit without touching the caller's RNG state.

    CPU kernels are deterministic for a given thread count; cuDNN's LSTM needs its
    deterministic flag. (``torch.use_deterministic_algorithms`` would import the compiler
    stack, ~9 s, for nothing these layers use.)
    """
    cudnn = torch.backends.cudnn
    was = cudnn.deterministic, cudnn.benchmark
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        torch.manual_seed(seed)
        cudnn.deterministic, cudnn.benchmark = True, False
        try:
            yield
        finally:
            cudnn.deterministic, cudnn.benchmark = was


def length_batches(lengths: Sequence[int], size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of positions with similar lengths (little padding), in a seeded random order."""
    order = np.lexsort((rng.random(len(lengths)), np.asarray(lengths)))
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    return [batches[i] for i in rng.permutation(len(batches))]
