"""Sentence splitting for rougeLsum and sentence-count checks: pysbd's rule-based English segmenter (offline, no
data download), which keeps abbreviations such as "Dr." and "U.S." inside their sentence; a line break always ends a
sentence."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


def sentences(text: str) -> list[str]:
    """The sentences of `text`, stripped, without empty ones."""
    return [s.strip() for line in text.splitlines() if line.strip() for s in _segmenter().segment(line) if s.strip()]
