"""Fixtures of the ubdcc_local tests: pattern writers that are always killed and cleaned up."""

from __future__ import annotations

import pytest

from pattern_support import PatternWriter, unique_cluster


@pytest.fixture
def start_writer():
    """``start_writer(**options) -> PatternWriter``: starts a pattern writer on a fresh cluster
    (unless ``cluster=`` is given) and returns once it printed ``ready``. Every writer started is
    killed, and its segments removed, when the test ends."""
    writers: list[PatternWriter] = []

    def start(cluster: str | None = None, **options) -> PatternWriter:
        writer = PatternWriter(cluster or unique_cluster(), **options)
        writers.append(writer)
        return writer

    yield start
    for writer in writers:
        writer.close()
