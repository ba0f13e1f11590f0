"""A diarized stream (Pipeline.stream_with_speakers) as the Diarizer's pieces come: a segment goes
out once the turns up to its end are known, not when the whole file is diarized. In-process,
over a stand-in Transcriber and a Diarizer whose pieces the test lets go one at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fakes import FakeHandle
from openai_fakes import FakeTranscriber

from serve_app.diarization.pieces import DiarizedPiece
from serve_app.diarization.speakers import Diarization, SpeakerTurn
from serve_app.errors import ServiceError
from serve_app.models.catalogue import ModelInfo
from serve_app.options import DecodeOptions, SpeakerOptions
from serve_app.pipeline import Pipeline, Prepared
from serve_app.transcript import Segment, TranscriptInfo

SEGMENTS = (
    Segment(0, 0.0, 4.0, " one"),
    Segment(1, 4.0, 8.0, " two"),
    Segment(2, 610.0, 614.0, " three"),
    Segment(3, 1190.0, 1195.0, " four"),
)
PIECES = (
    DiarizedPiece(600.0, Diarization(exclusive=[SpeakerTurn(0, 4, "A"), SpeakerTurn(4, 8, "B")])),
    DiarizedPiece(1200.0, Diarization(exclusive=[SpeakerTurn(610, 614, "B"), SpeakerTurn(1190, 1195, "A")])),
)


class PiecesDiarizer:
    """The Diarizer's handle: `diarize_pieces` sends piece k once `release[k]` is set."""

    def __init__(self, *, fail_at: int | None = None) -> None:
        self.release = [asyncio.Event() for _ in PIECES]
        self.sent = 0
        self.cancelled = False
        self.fail_at = fail_at

    def options(self, **_: Any) -> PiecesDiarizer:
        return self

    @property
    def diarize_pieces(self) -> Any:
        diarizer = self

        class Pieces:
            def __aiter__(self) -> AsyncIterator[DiarizedPiece]:
                return self._pieces()

            async def _pieces(self) -> AsyncIterator[DiarizedPiece]:
                for index, piece in enumerate(PIECES):
                    await diarizer.release[index].wait()
                    if index == diarizer.fail_at:
                        raise ServiceError("the Diarizer's replica died")
                    diarizer.sent += 1
                    yield piece

            def cancel(self) -> None:
                diarizer.cancelled = True

        class Method:
            @staticmethod
            def remote(audio: Any, options: SpeakerOptions) -> Pieces:
                return Pieces()

        return Method()


class Store:
    async def release(self, lease: str) -> None:
        return None


def pipeline(diarizer: PiecesDiarizer) -> Pipeline:
    return Pipeline(model_store=FakeHandle(Store()), transcriber=FakeTranscriber(SEGMENTS), diarizer=diarizer)


MODEL = ModelInfo(id="tiny.en", path="/nowhere", created=0)
SPEAKERS = (ModelInfo(id="pyannote-campplus", path="/nowhere", created=0, kind="diarization"), SpeakerOptions())


def test_segments_go_out_as_the_pieces_that_cover_them_come() -> None:
    async def scenario() -> None:
        diarizer = PiecesDiarizer()
        stream = pipeline(diarizer).stream_with_speakers(Prepared(None, MODEL, "lease"), DecodeOptions(), SPEAKERS)
        assert isinstance(await anext(stream), TranscriptInfo)
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.05)
        assert not first.done()  # no turns known yet
        diarizer.release[0].set()
        early = [await first, await anext(stream)]
        assert [(segment.text, segment.speaker) for segment in early] == [(" one", "A"), (" two", "B")]
        assert diarizer.sent == 1  # out before the second piece was diarized
        diarizer.release[1].set()
        rest = [segment async for segment in stream]
        assert [(segment.text, segment.speaker, segment.id) for segment in rest] == [(" three", "B", 2), (" four", "A", 3)]
        assert [segment.speaker_turn for segment in early + rest] == [True, True, False, True]

    asyncio.run(scenario())


def test_a_diarizer_that_fails_mid_file_fails_the_stream_and_labels_nothing_after() -> None:
    async def scenario() -> None:
        diarizer = PiecesDiarizer(fail_at=1)
        for event in diarizer.release:
            event.set()
        stream = pipeline(diarizer).stream_with_speakers(Prepared(None, MODEL, "lease"), DecodeOptions(), SPEAKERS)
        got: list[Any] = []
        with pytest.raises(ServiceError, match="replica died"):
            async for event in stream:
                got.append(event)
        assert [segment.text for segment in got[1:]] == [" one", " two"]

    asyncio.run(scenario())


def test_a_client_gone_cancels_the_diarization() -> None:
    async def scenario() -> None:
        diarizer = PiecesDiarizer()
        stream = pipeline(diarizer).stream_with_speakers(Prepared(None, MODEL, "lease"), DecodeOptions(), SPEAKERS)
        await anext(stream)
        diarizer.release[0].set()
        await anext(stream)
        await stream.aclose()
        assert diarizer.cancelled

    asyncio.run(scenario())
