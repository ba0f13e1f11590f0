"""The README's example commands, run as written against the running service: every `curl`
of its "Using it" and download sections, and its first OpenAI SDK example."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import whisper_repo
from media import SAMPLE_WAV, transcode

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(bash|python)\n(.*?)```", README, flags=re.S)
CURLS = [
    line.strip()
    for kind, block in BLOCKS
    if kind == "bash"
    for line in block.splitlines()
    if re.match(r"\s*curl .*localhost:8000", line)
]
OPENAI_EXAMPLE = next(
    block for kind, block in BLOCKS if kind == "python" and "from openai import OpenAI" in block and "audio" in block
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the examples name, made from the sample call."""
    folder = tmp_path_factory.mktemp("readme")
    for name, codec, rate, video in [
        ("call.mp3", "mp3", 16000, False),
        ("lecture.mp3", "mp3", 16000, False),
        ("talk.mp4", "aac", 16000, True),
        ("interview.ogg", "libopus", 48000, False),
    ]:
        transcode(SAMPLE_WAV, folder / name, codec=codec, rate=rate, video=video)
    (folder / "call.wav").write_bytes(SAMPLE_WAV.read_bytes())
    return folder


def test_the_readme_has_its_examples() -> None:
    assert len(CURLS) >= 6, CURLS


@pytest.mark.parametrize("command", CURLS)
def test_each_curl_example_works_as_written(service, hub, files: Path, command: str) -> None:
    for repo in ("Systran/faster-whisper-small.en", "Systran/faster-whisper-large-v3"):
        hub.repos.setdefault(repo, whisper_repo())  # tiny.en's files, under the names the examples download
    run = command.replace("localhost:8000", f"127.0.0.1:{service.port}")
    run = run.split(" #", 1)[0] + " -sS -o answer -w '%{http_code}'"
    done = subprocess.run(["bash", "-c", run], cwd=files, capture_output=True, text=True, timeout=300)
    answer = (files / "answer").read_text(errors="replace")
    assert done.returncode == 0, done.stderr
    assert done.stdout in ("200", "201"), f"{command}: {done.stdout} {answer[:500]}"
    if "stream=true" in command:
        assert "event: ok" in answer, answer[-500:]
    elif "response_format=srt" in command:
        assert "-->" in answer
    elif "/audio/" in command:
        assert "text" in answer and len(answer) > 50, answer


def test_the_openai_example_works_as_written(service, files: Path) -> None:
    script = OPENAI_EXAMPLE.replace("http://localhost:8000/v1", f"{service.url}/v1")
    done = subprocess.run([sys.executable, "-c", script], cwd=files, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Chicago" in done.stdout or len(done.stdout.split()) > 20, done.stdout
