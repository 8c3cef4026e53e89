"""text_file.read_text_file: endless devices, FIFOs without a writer, bad paths and bytes give one DataError line."""

from __future__ import annotations

import os
import threading
import time

import pytest

from pbs2p_edge.files import text_file
from pbs2p_edge.errors import DataError


def test_a_file_reads_whole(tmp_path):
    f = tmp_path / "p.txt"
    f.write_bytes("héllo\n".encode() * 100_000)  # several chunks
    assert text_file.read_text_file(f) == "héllo\n" * 100_000


def test_an_endless_device_is_refused_past_the_limit(monkeypatch):
    monkeypatch.setattr(text_file, "MAX_BYTES", 3 << 20)
    with pytest.raises(DataError, match=r"^prompt file /dev/zero is larger than 3 MiB$"):
        text_file.read_text_file("/dev/zero", "prompt file")


def test_a_fifo_without_a_writer_reads_as_empty_and_with_one_reads_through(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="is empty"):  # returns at once instead of blocking
        text_file.read_text_file(fifo)

    def write():
        with open(fifo, "wb") as w:
            w.write(b"piped prompt")

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.3)  # the writer waits in open() for a reader; opening then counts it as the FIFO's writer
    try:
        assert text_file.read_text_file(fifo) == "piped prompt"
    finally:
        writer.join(timeout=10)


@pytest.mark.parametrize("path, message", [
    ("/nonexistent/p.txt", "cannot open text file /nonexistent/p.txt: No such file or directory"),
    ("a\0b", "cannot open text file a\0b: embedded null byte"),
])
def test_bad_paths_give_one_line(path, message):
    with pytest.raises(DataError) as exc:
        text_file.read_text_file(path)
    assert str(exc.value) == message


def test_invalid_utf8_and_blank_files(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok \xff")
    with pytest.raises(DataError, match=r"is not UTF-8 \(byte 3: 0xff\)"):
        text_file.read_text_file(bad)
    blank = tmp_path / "blank.txt"
    blank.write_text(" \n\t")
    with pytest.raises(DataError, match="is empty"):
        text_file.read_text_file(blank)
