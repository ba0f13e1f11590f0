"""A job's output files: named after the media, read back with real parsers, each whole or absent."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from subtitles import parse_srt, parse_vtt

from serve_app.errors import ServiceError
from serve_app.formats import FORMATS
from serve_app.jobs import outputs
from serve_app.jobs.outputs import output_names, write_outputs
from serve_app.transcript import Segment, Transcript, TranscriptInfo

SPOKEN = Transcript(
    TranscriptInfo(task="transcribe", language="en", duration=9.0),
    [Segment(0, 0.0, 7.6, " Hello and welcome."), Segment(1, 7.6, 8.25, " Bye now.")],
)
CUES = [(0.0, 7.6, "Hello and welcome."), (7.6, 8.25, "Bye now.")]


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def write(out: Path, job_format: str) -> list[Path]:
    return write_outputs(SPOKEN, media_path="/data/media/track.mp3", output_dir=out, job_format=job_format)


def test_all_writes_the_five_files_named_after_the_media(out: Path) -> None:
    written = write(out, "all")
    assert written == [out / "track.txt", out / "track.vtt", out / "track.srt", out / "track.tsv", out / "track.json"]
    assert sorted(os.listdir(out)) == sorted(path.name for path in written)


def test_each_file_reads_back(out: Path) -> None:
    write(out, "all")
    assert (out / "track.txt").read_text().splitlines() == ["Hello and welcome.", "Bye now."]
    vtt = (out / "track.vtt").read_text()
    assert vtt.startswith("WEBVTT")
    assert "00:00:00.000 --> 00:00:07.600" in vtt
    assert [(c.start, c.end, c.text) for c in parse_vtt(vtt)] == CUES
    srt = (out / "track.srt").read_text()
    assert "00:00:00,000 --> 00:00:07,600" in srt
    assert [(c.start, c.end, c.text) for c in parse_srt(srt)] == CUES
    rows = list(csv.reader(io.StringIO((out / "track.tsv").read_text()), delimiter="\t"))
    assert rows == [["start", "end", "text"], ["0", "7600", "Hello and welcome."], ["7600", "8250", "Bye now."]]
    body = json.loads((out / "track.json").read_text())
    assert set(body) == {"text", "segments", "language"}
    assert (body["text"], body["language"]) == ("Hello and welcome. Bye now.", "en")
    assert [(s["start"], s["end"], s["text"].strip()) for s in body["segments"]] == CUES


@pytest.mark.parametrize("job_format", ["txt", "vtt", "srt", "tsv", "json"])
def test_one_format_writes_one_file(out: Path, job_format: str) -> None:
    assert write(out, job_format) == [out / f"track.{job_format}"]
    assert os.listdir(out) == [f"track.{job_format}"]


def test_names_keep_everything_but_the_last_extension() -> None:
    assert output_names("/m/talk.2024.final.mp4", "/o", "srt") == [Path("/o/talk.2024.final.srt")]
    with pytest.raises(ValueError, match="unknown job format"):
        output_names("/m/a.mp3", "/o", "docx")


def test_a_second_run_replaces_the_file_whole(out: Path) -> None:
    (out / "track.txt").write_text("an older transcript that was much longer than this one\n" * 10)
    write(out, "txt")
    assert (out / "track.txt").read_text() == "Hello and welcome.\nBye now.\n"


def test_files_are_readable_as_the_umask_allows(out: Path, umask_022: None) -> None:
    write(out, "txt")
    assert (out / "track.txt").stat().st_mode & 0o777 == 0o644


def test_a_failing_renderer_leaves_no_file_at_all(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(transcript: Transcript) -> str:
        raise RuntimeError("renderer bug")

    (out / "track.txt").write_text("kept\n")
    monkeypatch.setitem(FORMATS, "tsv", dataclasses.replace(FORMATS["tsv"], write=broken))
    with pytest.raises(RuntimeError, match="renderer bug"):
        write(out, "all")
    # Nothing half-done: the older file is intact, no new target appeared, no temporary is left.
    assert os.listdir(out) == ["track.txt"]
    assert (out / "track.txt").read_text() == "kept\n"


def test_a_full_disk_is_reported_and_leaves_nothing(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs.os, "fsync", no_space)
    with pytest.raises(ServiceError, match=r"could not write .*track\.txt: No space left on device"):
        write(out, "all")
    assert os.listdir(out) == []


def test_a_target_that_is_a_folder_is_reported(out: Path) -> None:
    (out / "track.srt").mkdir()
    with pytest.raises(ServiceError, match=r"could not write .*track\.srt"):
        write(out, "srt")
    assert os.listdir(out) == ["track.srt"]
