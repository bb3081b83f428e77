"""Segments of other owners (issue 10, item 4): ubdcc_local.Reader ignores them, says why in
``ignored()``, and reads them only when told to trust their owner.

A hostile neighbour's segment is made here by starting a pattern writer and giving its segment
to ``nobody``, which needs root; elsewhere these tests skip.
"""

from __future__ import annotations

import os

import pytest

import ubdcc_local
from pattern_support import EXCHANGE, market, retrying, unique_cluster

NOBODY = 65534


def requires_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a segment to another uid needs root")


@pytest.fixture
def forged_beside_real(start_writer, monkeypatch):
    """A cluster with a forged segment ``aaa`` (sorting first, owned by nobody, books PATTERN0
    and PATTERN1) beside the real one ``zzz`` (PATTERN0 only)."""
    requires_root()
    monkeypatch.delenv("UBDCC_SHM_TRUST", raising=False)
    cluster = unique_cluster()
    forged = start_writer(cluster=cluster, dcn="aaa", books=2, levels=10)
    real = start_writer(cluster=cluster, dcn="zzz", books=1, levels=10)
    os.chown(f"/dev/shm/{forged.segment}", NOBODY, NOBODY)
    return cluster, forged, real


def test_another_owners_segment_is_ignored_with_its_reason(forged_beside_real):
    cluster, forged, real = forged_beside_real
    reader = ubdcc_local.Reader(cluster)

    segments = {book["segment"] for book in reader.list()}
    assert segments == {real.segment}
    assert retrying(reader.get_asks, EXCHANGE, market(0), limit_count=1)
    with pytest.raises(ubdcc_local.DepthCacheNotFound):
        reader.get_asks(EXCHANGE, market(1))
    ignored = reader.ignored()
    assert [entry["segment"] for entry in ignored] == [forged.segment]
    assert f"uid {NOBODY}" in ignored[0]["reason"]
    assert "UBDCC_SHM_TRUST" in ignored[0]["reason"]


def test_a_trusted_owner_is_read_by_keyword_or_environment(forged_beside_real, monkeypatch):
    cluster, forged, _real = forged_beside_real
    by_keyword = ubdcc_local.Reader(cluster, trust=f"uid:{NOBODY}")
    assert retrying(by_keyword.get_asks, EXCHANGE, market(1), limit_count=1)
    assert by_keyword.ignored() == []

    monkeypatch.setenv("UBDCC_SHM_TRUST", f"gid:{NOBODY}")
    by_env = ubdcc_local.Reader(cluster)
    assert retrying(by_env.get_asks, EXCHANGE, market(1), limit_count=1)
    assert {book["segment"] for book in by_env.list()} >= {forged.segment}


def test_a_bad_trust_setting_is_a_value_error(monkeypatch):
    with pytest.raises(ValueError, match="uid:N or gid:N"):
        ubdcc_local.Reader(unique_cluster(), trust="user:bob")
    monkeypatch.setenv("UBDCC_SHM_TRUST", "uid:x")
    with pytest.raises(ValueError, match="UBDCC_SHM_TRUST"):
        ubdcc_local.Reader(unique_cluster())
