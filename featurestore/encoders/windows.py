"""Overlapping windows over a long sentence, so that a transformer sees every word.

A sentence of ``n_pieces`` word pieces that does not fit one forward pass is cut into windows
of at most ``size`` pieces that start and end on word boundaries and overlap by about
``overlap`` pieces. Each word then takes its vector from the window in which it has the most
context on its cut sides (a side that is the sentence's own start or end is not cut), i.e. from
the window where it sits nearest the centre. No word is dropped.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

import numpy as np

Window = tuple[int, int]  # [start, end) in pieces


def plan_windows(piece_word: np.ndarray, *, size: int, overlap: int) -> list[Window]:
    """``[start, end)`` piece ranges covering all pieces, each at most ``size`` long.

    ``piece_word`` is ``(n_pieces,) int`` (the word of each piece, non-decreasing). Windows end on
    word boundaries unless a single word is longer than ``size`` pieces, which is then cut.
    """
    n = len(piece_word)
    if n <= size:
        return [(0, n)]
    starts = np.flatnonzero(np.r_[True, piece_word[1:] != piece_word[:-1]])
    bounds = [*starts.tolist(), n]
    windows: list[Window] = []
    a = 0
    while True:
        if n - a <= size:
            windows.append((a, n))
            return windows
        b = bounds[bisect_right(bounds, a + size) - 1]
        cut = b <= a  # one word longer than a window: cut inside it
        if cut:
            b = a + size
        windows.append((a, b))
        lowest = max(b - overlap, a + 1)
        a = lowest if cut else bounds[bisect_left(bounds, lowest)]


def assign_pieces(piece_word: np.ndarray, windows: list[Window]) -> np.ndarray:
    """``(n_pieces,) int``: the window each piece takes its vector from.

    All pieces of a word come from one window: among the windows holding the whole word, the one
    where its smaller cut-side context is largest (ties: the earlier window). A word no window
    holds whole (longer than a window) is assigned piece by piece the same way.
    """
    n = len(piece_word)
    choice = np.zeros(n, dtype=np.int64)
    if len(windows) == 1:
        return choice
    starts = np.flatnonzero(np.r_[True, piece_word[1:] != piece_word[:-1]])
    ends = np.r_[starts[1:], n]
    for ps, pe in zip(starts.tolist(), ends.tolist()):
        best = _best_window(ps, pe, windows, n)
        if best is not None:
            choice[ps:pe] = best
        else:
            for p in range(ps, pe):
                choice[p] = _best_window(p, p + 1, windows, n)
    return choice


def _best_window(ps: int, pe: int, windows: list[Window], n: int) -> int | None:
    best, best_score = None, -1.0
    for k, (a, b) in enumerate(windows):
        if a <= ps and pe <= b:
            left = ps - a if a > 0 else float("inf")
            right = b - pe if b < n else float("inf")
            score = min(left, right)
            if score > best_score:
                best, best_score = k, score
    return best


def stitch(outs: list[np.ndarray], windows: list[tuple[int, int]], piece_word: np.ndarray) -> np.ndarray:
    """One ``(n_pieces, dim)`` array from overlapping windows: each word from its most central window."""
    choice = assign_pieces(piece_word, windows)
    stitched = np.empty((len(piece_word), outs[0].shape[1]), dtype=np.float32)
    for k, ((a, b), out) in enumerate(zip(windows, outs)):
        mine = np.flatnonzero(choice[a:b] == k)
        stitched[a + mine] = out[mine]
    return stitched
