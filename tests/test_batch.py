"""Batch transcription as users run it: `python -m serve_app.batch` over a folder of real clips
(the sample call, English and German speech, a corrupt file, a video without sound) on a Ray
it starts itself, then again to resume; and the input rules it follows, without Ray."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from media import SAMPLE_WAV, speak, transcode, video_without_sound
from subtitles import parse_srt, parse_vtt

from serve_app.batch import (
    DECODE_CPUS,
    EXIT_FAILED_FILES,
    MEDIA_EXTENSIONS,
    BatchError,
    media_files,
    plan_files,
    plan_pool,
    read_manifest,
)
from serve_app.engine.audio import SAMPLE_RATE, decode_audio

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ("txt", "vtt", "srt", "tsv", "json")

ENGLISH = {
    "en/greeting.wav": "Good morning everyone, and welcome to the meeting.",
    "en/weather.wav": "The weather is lovely today, so we will walk to the park.",
    "en/numbers.wav": "Please call me back tomorrow at ten o'clock.",
    "en/deep/news.mp3": "The library will open a new reading room next week.",
}
GERMAN = {
    "de/greeting.wav": "Guten Morgen zusammen, und herzlich willkommen zur Besprechung.",
    "de/weather.wav": "Das Wetter ist heute sehr schön, und wir gehen in den Park.",
    "de/numbers.wav": "Bitte rufen Sie mich morgen um zehn Uhr zurück.",
    "de/deep/berlin.wav": "Ich wohne seit zehn Jahren in Berlin, und ich fahre jeden Tag mit dem Fahrrad zur Arbeit.",
}
BROKEN = {"broken/corrupt.mp3", "broken/no-audio.mp4"}
GOOD = ["sample.wav", *ENGLISH, *GERMAN]
SUMMARY = re.compile(
    r"^(?P<files>\d+) files: (?P<transcribed>\d+) transcribed, (?P<done>\d+) already done, (?P<failed>\d+) failed; "
    r"(?P<hours>[\d.]+) h of audio in (?P<wall>[\d.]+) s \((?P<speed>[\d.]+) audio s / wall s\)$",
    re.MULTILINE,
)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder a user points the batch at: clips in sub-folders, two with the same name."""
    folder, scratch = tmp_path_factory.mktemp("batch-media"), tmp_path_factory.mktemp("speech")
    shutil.copy(SAMPLE_WAV, folder / "sample.wav")
    for clips, voice in ((ENGLISH, "en-us"), (GERMAN, "de")):
        for relative, text in clips.items():
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.suffix == ".mp3":
                transcode(speak(text, scratch / f"{target.stem}.wav", voice=voice), target, codec="mp3")
            else:
                speak(text, target, voice=voice)
    (folder / "broken").mkdir()
    (folder / "broken/corrupt.mp3").write_bytes(np.random.default_rng(7).bytes(20_000))
    video_without_sound(folder / "broken/no-audio.mp4")
    (folder / "notes.txt").write_text("not media: the batch leaves it alone\n")
    return folder


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """`python -m serve_app.batch ARGS`, as a user runs it."""
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}  # its own Ray
    env |= {"RAY_USAGE_STATS_ENABLED": "0", "PYANNOTE_METRICS_ENABLED": "false", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "serve_app.batch", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )


def summary(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    found = SUMMARY.search(result.stdout)
    assert found, f"no summary line in:\n{result.stdout}\n{result.stderr[-3000:]}"
    return found.groupdict()


def outputs(folder: Path) -> dict[str, int]:
    """Every file under `folder` but the failures list, with its modification time."""
    return {
        str(path.relative_to(folder)): path.stat().st_mtime_ns
        for path in folder.rglob("*")
        if path.is_file() and path.name != "failures.jsonl"
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batch-models")  # empty: the batch writes the embedded models in


@pytest.fixture(scope="module")
def first_run(
    media: Path, models: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("batch-out")
    result = run_cli(media, out, "--model", "base", "--model-dir", models, "--format", "all")
    return result, out


@pytest.mark.slow
def test_the_batch_transcribes_the_folder_and_reports_the_failures(first_run, media: Path) -> None:
    result, out = first_run
    assert result.returncode == EXIT_FAILED_FILES, result.stderr[-3000:]
    counts = summary(result)
    assert (counts["files"], counts["transcribed"], counts["done"], counts["failed"]) == ("11", "9", "0", "2")
    audio_seconds = 0.0
    for relative in GOOD:
        with open(media / relative, "rb") as clip:
            audio_seconds += decode_audio(clip).size / SAMPLE_RATE
    assert float(counts["hours"]) == pytest.approx(audio_seconds / 3600, abs=0.0006)
    assert "11/11" in result.stderr and f"{float(counts['hours']):.3f} h audio, 2 failed" in result.stderr  # the progress bar

    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    reasons = {Path(failure["path"]).relative_to(media).as_posix(): failure["reason"] for failure in failures}
    assert set(reasons) == BROKEN
    assert reasons["broken/no-audio.mp4"] == "file has no audio stream"
    assert "not audio or video that FFmpeg can decode" in reasons["broken/corrupt.mp3"]
    for relative, reason in reasons.items():
        assert f"{media / relative}: {reason}" in result.stdout


@pytest.mark.slow
def test_outputs_keep_the_folders_and_parse(first_run) -> None:
    _, out = first_run
    expected = {str(Path(relative).with_suffix(f".{fmt}")) for relative in GOOD for fmt in FORMATS}
    assert set(outputs(out)) == expected  # none for the broken files, no temporary files left
    for relative in GOOD:
        stem = out / Path(relative).with_suffix("")
        whisper = json.loads(stem.with_suffix(".json").read_text())
        assert whisper["text"].strip() and whisper["segments"]
        expected_cues = [(s["start"], s["end"], s["text"].strip()) for s in whisper["segments"]]
        assert all(0 <= start < end for start, end, _ in expected_cues)

        srt = parse_srt(stem.with_suffix(".srt").read_text())
        assert [(c.start, c.end, c.text) for c in srt] == expected_cues
        vtt = parse_vtt(stem.with_suffix(".vtt").read_text())
        assert [(c.start, c.end, c.text) for c in vtt] == expected_cues

        header, *rows = stem.with_suffix(".tsv").read_text().splitlines()
        assert header == "start\tend\ttext"
        assert [(int(start), int(end)) for start, end, _ in (row.split("\t") for row in rows)] == [
            (round(start * 1000), round(end * 1000)) for start, end, _ in expected_cues
        ]
        assert stem.with_suffix(".txt").read_text().splitlines() == [text for _, _, text in expected_cues]


@pytest.mark.slow
def test_languages_are_detected_per_file(first_run) -> None:
    _, out = first_run
    detected = {relative: json.loads((out / relative).with_suffix(".json").read_text())["language"] for relative in GOOD}
    assert detected == {"sample.wav": "en"} | dict.fromkeys(ENGLISH, "en") | dict.fromkeys(GERMAN, "de")
    assert "Chicago" in json.loads((out / "sample.json").read_text())["text"]


@pytest.mark.slow
def test_a_rerun_skips_what_is_done_and_tries_the_failures_again(first_run, media: Path, models: Path) -> None:
    _, out = first_run
    before = outputs(out)
    result = run_cli(media, out, "--model", "base", "--model-dir", models, "--format", "all")
    assert result.returncode == EXIT_FAILED_FILES, result.stderr[-3000:]
    counts = summary(result)
    assert (counts["files"], counts["transcribed"], counts["done"], counts["failed"]) == ("11", "0", "9", "2")
    assert float(counts["hours"]) == 0
    assert outputs(out) == before  # nothing written again
    failures = [json.loads(line)["path"] for line in (out / "failures.jsonl").read_text().splitlines()]
    assert sorted(Path(path).relative_to(media).as_posix() for path in failures) == sorted(BROKEN)


@pytest.fixture(scope="module")
def manifest_run(
    media: Path, models: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """A JSONL manifest with a language for one file, run with --language and --diarize."""
    folder = tmp_path_factory.mktemp("batch-manifest")
    manifest = folder / "files.jsonl"
    manifest.write_text(
        json.dumps({"path": str(media / "en/greeting.wav"), "language": "de"})
        + "\n"
        + json.dumps({"path": str(media / "de/greeting.wav")})
        + "\n"
        + json.dumps({"path": str(media / "sample.wav"), "language": "en"})
        + "\n"
    )
    out = folder / "out"
    result = run_cli(manifest, out, "--model", "base", "--model-dir", models, "--format", "all", "--language", "en", "--diarize")
    return result, out


@pytest.mark.slow
def test_a_manifest_gives_each_file_its_language(manifest_run) -> None:
    result, out = manifest_run
    assert result.returncode == 0, result.stderr[-3000:]
    counts = summary(result)
    assert (counts["files"], counts["transcribed"], counts["failed"]) == ("3", "3", "0")
    # Folders relative to the one that holds the files, so the two greetings do not collide;
    # the manifest's language wins, and a file without one takes --language (both forced here,
    # against what is spoken, so that the json shows the language the engine was told).
    assert json.loads((out / "en/greeting.json").read_text())["language"] == "de"
    assert json.loads((out / "de/greeting.json").read_text())["language"] == "en"
    assert not (out / "failures.jsonl").exists()


@pytest.mark.slow
def test_diarize_labels_the_speakers_of_the_call(manifest_run) -> None:
    result, out = manifest_run
    assert result.returncode == 0, result.stderr[-3000:]
    segments = json.loads((out / "sample.json").read_text())["segments"]
    speakers = [segment["speaker"] for segment in segments]
    assert set(speakers) == {"SPEAKER_00", "SPEAKER_01"}  # the sample is a call between two people
    assert [segment["speaker_turn"] for segment in segments] == [
        index == 0 or speaker != speakers[index - 1] for index, speaker in enumerate(speakers)
    ]
    assert [cue.speaker for cue in parse_srt((out / "sample.srt").read_text())] == speakers
    assert [cue.speaker for cue in parse_vtt((out / "sample.vtt").read_text())] == speakers
    assert all(
        line.startswith(f"[{speaker}] ")
        for line, speaker in zip((out / "sample.txt").read_text().splitlines(), speakers, strict=True)
    )
    # One synthetic voice a clip: one speaker.
    assert {segment["speaker"] for segment in json.loads((out / "de/greeting.json").read_text())["segments"]} == {"SPEAKER_00"}


@pytest.mark.slow
def test_refusals_before_the_batch_starts(media: Path, models: Path, tmp_path: Path) -> None:
    missing = run_cli(tmp_path / "nowhere", tmp_path / "out", "--model-dir", models)
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    unknown = run_cli(media, tmp_path / "out", "--model", "large-v9", "--model-dir", models)
    assert unknown.returncode == 2
    assert "model 'large-v9' is not in" in unknown.stderr
    english_only = run_cli(media, tmp_path / "out", "--model", "tiny.en", "--language", "de", "--model-dir", models)
    assert english_only.returncode == 2
    assert "English-only" in english_only.stderr
    not_a_pipeline = run_cli(media, tmp_path / "out", "--diarization-model", "tiny.en", "--model-dir", models)
    assert not_a_pipeline.returncode == 2
    assert "model tiny.en is a transcription model; name a diarization model" in not_a_pipeline.stderr
    assert not (tmp_path / "out").exists()  # refused before anything was written


# -- the rules, without Ray -------------------------------------------------------------------


def test_manifests_csv_jsonl_and_lines(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    csv_manifest = tmp_path / "lists/files.csv"
    csv_manifest.write_text("path,language\n../a/one.mp3,de\n/data/two.wav,\n../a/one.mp3,fr\n")
    assert read_manifest(csv_manifest) == [(tmp_path / "a/one.mp3", "de"), (Path("/data/two.wav"), None)]

    jsonl = tmp_path / "files.jsonl"
    jsonl.write_text('{"path": "x/one.mp3", "language": "EN"}\n\n{"path": "two.wav"}\n')
    assert read_manifest(jsonl) == [(tmp_path / "x/one.mp3", "en"), (tmp_path / "two.wav", None)]

    lines = tmp_path / "files.txt"
    lines.write_text("# media\nx/one.mp3\n\n  two.wav  \n")
    assert read_manifest(lines) == [(tmp_path / "x/one.mp3", None), (tmp_path / "two.wav", None)]


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        ("files.csv", "file,lang\na.mp3,de\n", "needs a header with a path column"),
        ("files.csv", "path,language\na.mp3,klingon\n", "line 2: language 'klingon'"),
        ("files.jsonl", '{"path": "a.mp3"}\nnot json\n', "line 2 is not JSON"),
        ("files.jsonl", '{"file": "a.mp3"}\n', 'line 1: each line must be an object with a "path"'),
    ],
)
def test_a_bad_manifest_says_which_line(tmp_path: Path, name: str, text: str, reason: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(BatchError, match=re.escape(reason)):
        read_manifest(tmp_path / name)


def test_outputs_are_named_after_the_file_and_keep_its_folder(tmp_path: Path) -> None:
    found = [
        (tmp_path / "a/talk.mp3", None),
        (tmp_path / "a/talk.wav", None),
        (tmp_path / "b/talk.mp3", "de"),
        (tmp_path / "c.ogg", None),
    ]
    planned = plan_files(found, tmp_path)
    assert [str(file.outputs(Path("/out"), "txt")[0]) for file in planned] == [
        "/out/a/talk.mp3.txt",  # two files of one folder with one stem keep their extensions
        "/out/a/talk.wav.txt",
        "/out/b/talk.txt",
        "/out/c.txt",
    ]
    assert planned[2].language == "de"


def test_the_actor_pool_leaves_room_to_decode() -> None:
    # What the batch's own Ray declares on a 2-core host: the cores, and one CPU to decode on.
    assert plan_pool({"CPU": 3.0}, actors=None, cpus=1, gpus=None).actors == 2
    with pytest.raises(BatchError, match="use --actors 1"):
        plan_pool({"CPU": 2.0}, actors=2, cpus=1, gpus=None)  # every CPU held: nothing would decode
    assert plan_pool({"CPU": 2.0}, actors=None, cpus=1, gpus=None).actors == 1
    gpu = plan_pool({"CPU": 16.0, "GPU": 2.0}, actors=None, cpus=4, gpus=None)
    assert (gpu.actors, gpu.cpus, gpu.gpus, gpu.device) == (2, 4, 1.0, "cuda")
    assert 2 * 4 + DECODE_CPUS <= 16
    with pytest.raises(BatchError, match="an actor of 1 CPU and 1 GPU does not fit"):
        plan_pool({"CPU": 3.0}, actors=None, cpus=1, gpus=1)


def test_the_input_may_be_one_media_file_but_not_another_binary(tmp_path: Path) -> None:
    (tmp_path / "call.MP3").write_bytes(b"\xff\xfb" * 100)
    [single] = media_files(tmp_path / "call.MP3", MEDIA_EXTENSIONS)
    assert (single.path, single.outputs(Path("/out"), "srt")) == (tmp_path / "call.MP3", [Path("/out/call.srt")])
    (tmp_path / "archive.bin").write_bytes(b"\xff\xfb" * 100)
    with pytest.raises(BatchError, match="is not a manifest"):
        media_files(tmp_path / "archive.bin", MEDIA_EXTENSIONS)
