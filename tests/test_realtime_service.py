"""Live transcription against the real service (slow): the openai SDK's realtime client,
unchanged, streaming the sample call at real-time pace; and the try-it page in headless
Chromium with a fake microphone."""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
from live_client import pcm24, stream
from media import SAMPLE_WAV, reference_words, speak, word_error_rate

from serve_app.local import LocalService

pytestmark = pytest.mark.slow

WER_LIMIT = 0.15
"""Completed texts joined against the same file's /v1/audio/transcriptions text, both tiny.en.
The goal is 0.05 (issue 19), where the file route itself lies from its own transcript: on the
same audio behind 0 to 200 ms of silence, 0.032 to 0.071 over the benchmark corpus
(benchmarks/live_wer.py). The utterances are decoded apart (each prompted with the completed
words before it), and on this one call which words tiny.en mishears depends on the CPU's int8
kernels: 0.013 to 0.093 on the same kind of machine, 0.137 on another (README, Live
transcription)."""
SAID_MARGIN = 0.05
"""Against the words said (the call's STM), the completed texts are at most this much worse than
the file route's text: on a Xeon, 0.136 against the file route's 0.160."""


def test_the_sdk_streams_the_sample_call_at_real_time_pace(service: LocalService, client: httpx.Client) -> None:
    with SAMPLE_WAV.open("rb") as media:
        reference = client.post("/v1/audio/transcriptions", files={"file": media}, data={"model": "tiny.en"}).json()["text"]
    run = stream(service.url, pcm24(SAMPLE_WAV), model="tiny.en")
    kinds = [event.type for _, event in run.events]
    assert "input_audio_buffer.speech_started" in kinds and "input_audio_buffer.speech_stopped" in kinds
    assert run.first_delta_s is not None and run.first_delta_s < run.sent_s, "deltas arrive while the audio is still being sent"
    assert "conversation.item.input_audio_transcription.failed" not in kinds
    wer = word_error_rate(reference, run.text)
    print(f"live WER against the file route: {wer:.3f}; {run.summary()}")
    assert wer <= WER_LIMIT, (wer, run.text, reference)
    said = reference_words()
    assert word_error_rate(said, run.text) <= word_error_rate(said, reference) + SAID_MARGIN, (run.text, reference)


def test_a_bad_event_gets_an_error_and_the_session_lives_on(service: LocalService, tmp_path: Path) -> None:
    import openai

    speech = pcm24(speak("The quick brown fox jumps over the lazy dog.", tmp_path / "fox.wav", voice="en-us"))
    client = openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0)
    with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        assert connection.recv().type == "session.created"
        connection.send({"type": "session.update", "event_id": "evt_bad", "session": {"type": "realtime"}})  # type: ignore[typeddict-item]
        error = connection.recv()
        assert error.type == "error" and error.error.event_id == "evt_bad" and error.error.param == "session.type"
        connection.session.update(session={"type": "transcription", "audio": {"input": {"turn_detection": None}}})
        assert connection.recv().type == "session.updated"
        connection.input_audio_buffer.append(audio=base64.b64encode(speech).decode())
        connection.input_audio_buffer.commit()
        while (event := connection.recv()).type != "conversation.item.input_audio_transcription.completed":
            assert event.type != "error", event
        assert "fox" in event.transcript.lower(), event


def test_a_session_over_its_buffer_limit_gets_an_error_then_a_clean_close(service: LocalService) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0)
    with client.realtime.connect(extra_query={"intent": "transcription"}) as connection:
        assert connection.recv().type == "session.created"
        connection.session.update(session={"type": "transcription", "audio": {"input": {"turn_detection": None}}})
        second = base64.b64encode(bytes(48000)).decode()
        for _ in range(121):  # realtime_max_buffer_s is 120 by default
            connection.input_audio_buffer.append(audio=second)
        events = list(connection)  # ends without an exception: a clean close (1000)
        errors = [event for event in events if event.type == "error"]
        assert errors and errors[0].error.code == "input_audio_buffer_overflow", events


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no Chromium: scripts/setup test installs Debian's chromium (the browser test runs the system browser)")
    pytest.importorskip("playwright", reason="the browser test drives Chromium with playwright (scripts/setup test)")
    return path


def padded(path: Path, seconds: float = 1.5) -> Path:
    """The WAV with silence before and after: Chromium's fake microphone loops the file, and
    the pause makes each loop an utterance of its own."""
    import wave

    with wave.open(str(path)) as source:
        params, frames = source.getparams(), source.readframes(source.getnframes())
    silence = bytes(int(params.framerate * seconds) * params.sampwidth * params.nchannels)
    with wave.open(str(path), "wb") as target:
        target.setparams(params)
        target.writeframes(silence + frames + silence)
    return path


def test_the_page_in_a_browser(service: LocalService, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    browser_path = chromium()
    # What the fake microphone says, again and again; the page must show its words live.
    voice = padded(
        speak(
            "The quick brown fox jumps over the lazy dog. Then it runs far away into the deep dark woods.",
            tmp_path / "voice.wav",
            voice="en-us",
            speed=150,
        )
    )
    shots = Path(os.environ.get("WHISPER_SERVE_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    flags = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={voice}",
        "--no-sandbox",
        "--autoplay-policy=no-user-gesture-required",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=flags)
        page = browser.new_page(viewport={"width": 900, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{service.url}/")
        expect(page.locator("#models tbody tr").first).to_be_visible(timeout=30_000)
        page.keyboard.press("Tab")  # the page is usable from the keyboard: focus reaches the key field first
        page.click("#record")
        started = time.monotonic()
        expect(page.locator("#live")).to_contain_text("fox", timeout=30_000, ignore_case=True)
        first_words_s = time.monotonic() - started
        expect(page.locator("#live p.final").first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(shots / "live.png"))
        page.click("#record")  # stop
        expect(page.locator("#record")).to_have_text("Start recording", timeout=15_000)
        page.set_input_files("#file", str(SAMPLE_WAV))
        expect(page.locator("#segments li").first).to_be_visible(timeout=120_000)
        speakers = page.locator("#timeline .row").count()
        assert speakers >= 2, "the sample call has two speakers"
        assert page.locator("#timeline .turn").count() >= speakers
        assert page.get_attribute("#srt", "href").startswith("blob:")
        page.screenshot(path=str(shots / "file.png"), full_page=True)
        browser.close()
    assert not errors, errors
    print(f"first live words after {first_words_s:.1f} s; screenshots in {shots}")
