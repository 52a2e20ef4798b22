"""Tests for runtime.tracking (event files) and runtime.client.tracking (SummaryWriter)."""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runtime.client.tracking import SummaryWriter
from runtime.tracking import EventFileWriter, MetricsWriter
from runtime.tracking import tfevents
from runtime.tracking.tfevents import crc32c_table, encode_event, masked_crc32c

REPO = Path(__file__).resolve().parents[2]


def _accumulator(logdir: Path) -> Any:
    pytest.importorskip(
        "tensorboard", reason="tensorboard (test extra) reads the event files back"
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    return EventAccumulator(str(logdir)).Reload()


def _scalars(acc: Any, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in acc.Scalars(tag)]


def _read_records(path: Path) -> list[bytes]:
    """A strict TFRecord reader: every length and data CRC must match."""
    data = path.read_bytes()
    records, pos = [], 0
    while pos < len(data):
        header = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
        assert length_crc == masked_crc32c(header)
        body = data[pos + 12 : pos + 12 + length]
        (body_crc,) = struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])
        assert body_crc == masked_crc32c(body)
        records.append(body)
        pos += 16 + length
    return records


# --- CRC-32C -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, crc",
    [
        (b"", 0x00000000),
        (b"a", 0xC1D04330),
        (b"123456789", 0xE3069283),
        (bytes(32), 0x8A9136AA),
        (b"\xff" * 32, 0x62A8AB43),
        (bytes(range(32)), 0x46DD794E),
    ],
)
def test_crc32c_known_vectors(data: bytes, crc: int) -> None:
    assert crc32c_table(data) == crc
    assert tfevents.crc32c(data) == crc


def test_masked_crc_matches_tensorflow_definition() -> None:
    crc = 0xE3069283
    expected = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    assert masked_crc32c(b"123456789") == expected


# --- Event encoding ----------------------------------------------------------------------


def test_encode_event_round_trips_through_tensorboard_protos() -> None:
    pytest.importorskip("tensorboard", reason="tensorboard (test extra) provides the Event proto")
    from tensorboard.compat.proto.event_pb2 import Event

    event = Event.FromString(encode_event(1234.5, 300, scalar=("a/b", 0.25)))
    assert event.wall_time == 1234.5
    assert event.step == 300
    assert event.summary.value[0].tag == "a/b"
    assert event.summary.value[0].simple_value == 0.25

    header = Event.FromString(encode_event(7.0, file_version="brain.Event:2"))
    assert header.file_version == "brain.Event:2" and header.step == 0

    big = Event.FromString(encode_event(0.0, 2**62 + 5, scalar=("x", 1e300)))
    assert big.step == 2**62 + 5
    assert big.summary.value[0].simple_value == math.inf


def test_file_name_and_first_record(tmp_path: Path) -> None:
    with EventFileWriter(tmp_path / "logs", filename_suffix=".site-1") as writer:
        path = writer.path
    assert path.parent == tmp_path / "logs"
    parts = path.name.split(".")
    assert parts[:3] == ["events", "out", "tfevents"]
    assert parts[3].isdigit() and len(parts[3]) >= 10
    assert path.name.endswith(f".{os.getpid()}.{parts[-2]}.site-1")
    records = _read_records(path)
    assert len(records) == 1
    assert b"brain.Event:2" in records[0]
    assert records[0][0] == 0x09  # wall_time, fixed64, comes first


# --- EventFileWriter read back by TensorBoard ----------------------------------------------


def test_scalars_read_back_by_tensorboard(tmp_path: Path) -> None:
    with EventFileWriter(tmp_path) as writer:
        for step, loss in [(0, 2.5), (1, 1.25), (2, 0.1)]:
            writer.add_scalar("train/loss", loss, step)
        writer.add_scalar("val/acc", 0.5, 10, wall_time=1000.0)
        writer.add_scalar("val/acc", 0.75, 3)  # out of order: kept as written
        writer.add_scalar("val/acc", np.float32(0.875), np.int64(7))
        writer.add_scalar("nan", math.nan, 0)

    acc = _accumulator(tmp_path)
    assert sorted(acc.Tags()["scalars"]) == ["nan", "train/loss", "val/acc"]
    assert _scalars(acc, "train/loss") == [
        (0, 2.5), (1, 1.25), (2, pytest.approx(0.1, rel=1e-7))
    ]
    assert _scalars(acc, "val/acc") == [(10, 0.5), (3, 0.75), (7, 0.875)]
    assert acc.Scalars("val/acc")[0].wall_time == 1000.0
    assert math.isnan(acc.Scalars("nan")[0].value)


def test_nothing_reaches_disk_before_flush(tmp_path: Path) -> None:
    writer = EventFileWriter(tmp_path)
    size = writer.path.stat().st_size
    writer.add_scalar("loss", 1.0, 0)
    assert writer.path.stat().st_size == size
    writer.flush()
    assert len(_read_records(writer.path)) == 2
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        writer.add_scalar("loss", 1.0, 1)


def test_buffer_is_written_when_it_passes_64_kib(tmp_path: Path) -> None:
    writer = EventFileWriter(tmp_path)
    for step in range(5000):
        writer.add_scalar("a-long-enough-tag/for-the-buffer", float(step), step)
    assert writer.path.stat().st_size > 64 * 1024
    writer.close()
    assert len(_read_records(writer.path)) == 5001


def test_truncated_file_keeps_complete_records(tmp_path: Path) -> None:
    with EventFileWriter(tmp_path) as writer:
        for step in range(5):
            writer.add_scalar("loss", float(step), step)
    data = writer.path.read_bytes()
    writer.path.write_bytes(data[:-7])  # cut the last record short

    assert _scalars(_accumulator(tmp_path), "loss") == [(s, float(s)) for s in range(4)]


def test_invalid_scalars_are_rejected(tmp_path: Path) -> None:
    with EventFileWriter(tmp_path) as writer:
        with pytest.raises(ValueError, match="step"):
            writer.add_scalar("loss", 1.0, -1)
        with pytest.raises(TypeError, match="step"):
            writer.add_scalar("loss", 1.0, 1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="loss"):
            writer.add_scalar("loss", True, 0)
        with pytest.raises(TypeError, match="loss"):
            writer.add_scalar("loss", "1.0", 0)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="tag"):
            writer.add_scalar("", 1.0, 0)


def test_concurrent_writers_produce_valid_records(tmp_path: Path) -> None:
    writer = EventFileWriter(tmp_path)

    def log(thread: int) -> None:
        for step in range(500):
            writer.add_scalar(f"t{thread}", float(step), step)
            if step % 100 == 0:
                writer.flush()

    threads = [threading.Thread(target=log, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    assert len(_read_records(writer.path)) == 1 + 4 * 500


# --- MetricsWriter -----------------------------------------------------------------------


def test_metrics_writer_one_folder_per_source(tmp_path: Path) -> None:
    root = tmp_path / "tb"
    with MetricsWriter(root) as metrics:
        metrics.write("site-1", [{"tag": "loss", "value": 0.5, "step": 0, "wall_time": 10.0}])
        metrics.write("site-2", [{"tag": "loss", "value": 0.7, "step": 0}])
        metrics.write("site-1", [{"tag": "loss", "value": 0.25, "step": 1, "wall_time": 11.0}])
        metrics.write("server", [])
    assert sorted(p.name for p in root.iterdir()) == ["site-1", "site-2"]
    assert len(list((root / "site-1").iterdir())) == 1
    assert _scalars(_accumulator(root / "site-1"), "loss") == [(0, 0.5), (1, 0.25)]
    assert _scalars(_accumulator(root / "site-2"), "loss") == [
        (0, pytest.approx(0.7, rel=1e-7))
    ]
    metrics.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        metrics.write("site-1", [])


@pytest.mark.parametrize("source", ["", ".", "..", "../x", "a/b", "a\\b", "x\0"])
def test_metrics_writer_rejects_unsafe_sources(tmp_path: Path, source: str) -> None:
    metrics = MetricsWriter(tmp_path / "tb")
    with pytest.raises(ValueError, match="source"):
        metrics.write(source, [{"tag": "loss", "value": 1.0, "step": 0}])
    assert not (tmp_path / "tb").exists()


def test_metrics_writer_checks_all_records_first(tmp_path: Path) -> None:
    metrics = MetricsWriter(tmp_path)
    good = {"tag": "loss", "value": 1.0, "step": 0}
    for bad in [
        {"tag": "loss", "value": 1.0},
        {"tag": "loss", "value": "x", "step": 1},
        {"tag": "loss", "value": 1.0, "step": -1},
        {"tag": "loss", "value": 1.0, "step": 1, "wall_time": "now"},
        ["loss", 1.0, 1],
    ]:
        with pytest.raises(ValueError, match="record 1 from 'site-1'"):
            metrics.write("site-1", [good, bad])  # type: ignore[list-item]
    assert not (tmp_path / "site-1").exists()
    metrics.close()


# --- SummaryWriter (site side) -----------------------------------------------------------


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from runtime.client import api

    sink: dict[str, Any] = {"records": [], "flushes": 0}

    def flush() -> None:
        sink["flushes"] += 1

    monkeypatch.setattr(api, "_record_metric", sink["records"].append, raising=False)
    monkeypatch.setattr(api, "_flush_metrics", flush, raising=False)
    return sink


def test_summary_writer_records(captured: dict[str, Any]) -> None:
    writer = SummaryWriter(log_dir="ignored", comment="ignored")
    writer.add_scalar("loss", 0.5, global_step=3)
    writer.add_scalars("acc", {"train": 0.9, "val": 0.8}, global_step=3)
    writer.flush()

    records = captured["records"]
    assert [(r["tag"], r["value"], r["step"]) for r in records] == [
        ("loss", 0.5, 3),
        ("acc/train", 0.9, 3),
        ("acc/val", 0.8, 3),
    ]
    for record in records:
        assert set(record) == {"tag", "value", "step", "wall_time"}
        assert type(record["value"]) is float and type(record["step"]) is int
        assert isinstance(record["wall_time"], float)
    assert records[1]["wall_time"] == records[2]["wall_time"]
    assert captured["flushes"] == 1


def test_summary_writer_default_steps_count_per_tag(captured: dict[str, Any]) -> None:
    with SummaryWriter() as writer:
        writer.add_scalar("loss", 1.0)
        writer.add_scalar("loss", 0.9)
        writer.add_scalar("lr", 0.1)
        writer.add_scalar("loss", 0.8, global_step=10)
        writer.add_scalar("loss", 0.7)
        writer.add_scalars("acc", {"train": 0.5})
        writer.add_scalars("acc", {"train": 0.6, "val": 0.4})
    steps = [(r["tag"], r["step"]) for r in captured["records"]]
    assert steps == [
        ("loss", 0), ("loss", 1), ("lr", 0), ("loss", 10), ("loss", 11),
        ("acc/train", 0), ("acc/train", 1), ("acc/val", 0),
    ]
    assert captured["flushes"] == 1  # close() flushes


def test_summary_writer_accepts_numpy_and_torch_numbers(captured: dict[str, Any]) -> None:
    writer = SummaryWriter()
    writer.add_scalar("np32", np.float32(0.25), global_step=np.int64(2))
    writer.add_scalar("np0d", np.array(1.5))
    writer.add_scalar("int", 3)
    writer.add_scalar("nan", math.nan)
    writer.add_scalar("inf", -math.inf)
    values = [r["value"] for r in captured["records"]]
    assert values[:3] == [0.25, 1.5, 3.0] and math.isnan(values[3]) and values[4] == -math.inf
    assert captured["records"][0]["step"] == 2

    torch = pytest.importorskip("torch", reason="torch is optional (the torch extra)")
    writer.add_scalar("t", torch.tensor(0.5, requires_grad=True) * 2)
    writer.add_scalar("t16", torch.tensor(2, dtype=torch.int16))
    assert [r["value"] for r in captured["records"][-2:]] == [1.0, 2.0]
    with pytest.raises(TypeError, match="'tvec'"):
        writer.add_scalar("tvec", torch.ones(3))
    with pytest.raises(TypeError, match="'tbool'"):
        writer.add_scalar("tbool", torch.tensor(True))


@pytest.mark.parametrize("value", [True, np.bool_(False), "0.5", None, [1.0], 1j, np.ones(2)])
def test_summary_writer_rejects_non_numbers(captured: dict[str, Any], value: Any) -> None:
    writer = SummaryWriter()
    with pytest.raises(TypeError, match="'my/tag'"):
        writer.add_scalar("my/tag", value)
    assert captured["records"] == []


def test_summary_writer_add_scalars_is_all_or_nothing(captured: dict[str, Any]) -> None:
    writer = SummaryWriter()
    with pytest.raises(TypeError, match="'acc/val'"):
        writer.add_scalars("acc", {"train": 0.9, "val": "high"})
    with pytest.raises(ValueError, match="global_step"):
        writer.add_scalars("acc", {"train": 0.9}, global_step=-1)
    with pytest.raises(TypeError, match="global_step"):
        writer.add_scalar("loss", 1.0, global_step=True)  # type: ignore[arg-type]
    assert captured["records"] == []
    writer.add_scalars("acc", {"train": 0.9})
    assert captured["records"][0]["step"] == 0


# --- imports -----------------------------------------------------------------------------


def test_tracking_imports_without_optional_packages() -> None:
    code = (
        "import sys\n"
        "import runtime.tracking, runtime.tracking.tfevents, runtime.client.tracking\n"
        "bad = [m for m in ('tensorboard', 'tensorflow', 'torch') "
        "if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
