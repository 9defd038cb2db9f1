"""The spool: records in order, each until acknowledged; bounded (what it refuses is counted);
a restart goes on from the last acknowledgement; a write cut short by a crash is dropped."""

from __future__ import annotations

from pipeline.service import spool as spool_module
from pipeline.service.spool import Spool


def drain(s: Spool) -> list[str]:
    got = []
    while (item := s.next(timeout=0)) is not None:
        position, record = item
        got.append(record)
        s.ack(position)
    return got


def test_records_come_out_in_order_and_stay_until_acknowledged(tmp_path):
    s = Spool(tmp_path, cap_bytes=10_000)
    for i in range(5):
        assert s.put(f'{{"n": {i}}}')
    first = s.next(timeout=0)
    assert first[1] == '{"n": 0}' and s.next(timeout=0) == first  # not acknowledged: the same one again
    s.ack(first[0])
    assert drain(s) == [f'{{"n": {i}}}' for i in range(1, 5)]
    assert (s.pending, s.pending_bytes) == (0, 0) and s.next(timeout=0.01) is None


def test_a_full_spool_refuses_new_records_and_counts_them(tmp_path):
    s = Spool(tmp_path, cap_bytes=30)
    assert [s.put("x" * 9) for _ in range(4)] == [True, True, True, False]  # 10 bytes each with the newline
    assert s.dropped == 1 and s.pending == 3
    s.ack(s.next(timeout=0)[0])
    assert s.put("y" * 9) and drain(s) == ["x" * 9, "x" * 9, "y" * 9]


def test_a_restart_goes_on_from_the_last_acknowledgement(tmp_path, monkeypatch):
    monkeypatch.setattr(spool_module, "SEGMENT_BYTES", 64)  # several segment files
    s = Spool(tmp_path, cap_bytes=100_000)
    for i in range(40):
        s.put(f"record {i:03d}")
    for _ in range(25):
        s.ack(s.next(timeout=0)[0])
    s.close()
    segments = sorted(tmp_path.glob("*.jsonl"))
    assert len(segments) < 40 * 11 // 64 + 1  # read segments were deleted

    again = Spool(tmp_path, cap_bytes=100_000)
    assert again.pending == 15
    again.put("record 040")
    assert drain(again) == [f"record {i:03d}" for i in range(25, 41)]
    again.close()
    assert Spool(tmp_path, cap_bytes=100_000).pending == 0


def test_a_write_cut_short_by_a_crash_is_dropped(tmp_path):
    s = Spool(tmp_path, cap_bytes=10_000)
    s.put("whole")
    s.close()
    segment = next(tmp_path.glob("*.jsonl"))
    with open(segment, "ab") as f:
        f.write(b'{"half')
    again = Spool(tmp_path, cap_bytes=10_000)
    again.put("next")
    assert drain(again) == ["whole", "next"]
