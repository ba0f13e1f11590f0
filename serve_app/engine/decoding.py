"""faster-whisper's batched decoding, one chunk of ≤ 30 s at a time or many together.

The pieces of faster-whisper's `BatchedInferencePipeline`, taken apart so that a batch may hold
the chunks of several requests: cutting the audio at silences (its Silero VAD), decoding a
batch (its batched generate), and putting the times back on the audio's own clock. Every
chunk of a batch is decoded as it would be alone, so a request's transcript does not depend
on what it was batched with.

The VAD cuts out pauses, so a chunk is speech laid end to end: a segment Whisper writes across
a pause it never heard would start before it on the audio's clock (a cue shown seconds early)
or end after it. Such a segment is split where the pause was, by the timings of its words
(`_split_at_gaps`); a chunk with no such segment costs nothing more.

Whisper may stop a chunk's text before the chunk's end, its last segment left unfinished:
faster-whisper's sequential `transcribe` then decodes again from the last timestamp, where its
batched pipeline drops the rest of the chunk's speech. Here the rest decodes again, as a chunk of
its own (`decode_batch`), so that no words are lost.
"""

from __future__ import annotations

import bisect
import inspect
from dataclasses import dataclass, replace
from math import ceil

import ctranslate2
import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import TranscriptionOptions, get_compression_ratio, get_suppressed_tokens, pad_or_trim
from faster_whisper.vad import SpeechTimestampsMap, VadOptions, get_speech_timestamps

from serve_app.engine.audio import SAMPLE_RATE
from serve_app.options import EncoderWindow
from serve_app.transcript import Segment, Word

__all__ = [
    "Chunk",
    "Cut",
    "DecodeKey",
    "SpeechClock",
    "context_tokens",
    "cut_head",
    "cut_rest",
    "decode_batch",
    "detect_language",
    "to_segment",
]

CHUNK_SECONDS = 30
FRAMES_PER_S = SAMPLE_RATE // 160
"""Whisper's feature frames a second (a hop of 160 samples)."""
N_FRAMES = CHUNK_SECONDS * FRAMES_PER_S
HEAD_SECONDS = 60
VAD_PIECE_SAMPLES = 10_000 * 512
"""The rest of a file is cut in pieces of this many samples (320 s), the batch of windows
faster-whisper's Silero VAD runs at once: the VAD copies what it is given (twice, and more
while it runs), so a whole hour given at once would cost about a gigabyte."""
GAP_SAMPLES = SAMPLE_RATE // 100
"""A removed silence shorter than this (10 ms) is no gap: the VAD splits a pause too short to
remove between its neighbours, and an odd sample can fall between the halves."""
FIRST_CHUNK_SECONDS = 10
REST_SECONDS = 1.0
"""Speech left after Whisper's last finished segment decodes again only if it is this long."""
REST_PASSES = 3
"""A chunk's rest decodes again at most this many times: audio that makes Whisper stop early
over and over costs at most four decodes, not one for every second of the chunk."""
FITTED_TOKENS_PER_S = 12
"""A decode in a fitted window (EncoderWindow) writes at most this many tokens a second of its
window (and no more than half of Whisper's 448, nor than its prompt leaves of them): in a short
window Whisper may not know where to stop, and repeat itself up to its 448 tokens."""
_DEFAULTS = {name: p.default for name, p in inspect.signature(BatchedInferencePipeline.transcribe).parameters.items()}


@dataclass(frozen=True, slots=True)
class DecodeKey:
    """All a chunk's decoding depends on beside its audio: chunks with equal keys may share a batch.
    The model is compared by identity: chunks share a batch only on the same loaded weights."""

    model: WhisperModel
    task: str
    language: str
    prompt: str | None
    temperature: float
    word_timestamps: bool
    beam_size: int
    window: EncoderWindow | None = None
    """The encoder's window fitted to the audio (`encoder_frames`); None: Whisper's whole 30 s."""
    urgent: bool = False
    """Its batches go before others waiting (serve_app/engine/batcher.py): DecodeOptions.urgent."""
    context_tokens: int = 0
    """How many tokens each chunk's `context` holds: the rows of a batch have prompts of one
    length, as CTranslate2 needs (the start of the transcript at one place in every row)."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """Speech of at most 30 s, silences cut out: the `regions` (samples) of `source`, the
    request's whole audio, laid end to end; `offset`: where it starts on the speech-only clock;
    `gaps`: where, on that clock, the VAD cut a silence out of it. The samples are copied out
    only when the chunk decodes (`audio`), so that a long file's chunks waiting for the batcher
    hold no copy of its speech."""

    source: np.ndarray
    regions: tuple[tuple[int, int], ...]
    offset: float
    gaps: tuple[float, ...] = ()
    context: tuple[int, ...] = ()
    """The tokens of the words said just before (DecodeOptions.context), heard in Whisper's
    prompt after the key's `prompt`: a chunk's own, where the key's is its whole batch's."""

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate([self.source[start:end] for start, end in self.regions])

    @property
    def seconds(self) -> float:
        return sum(end - start for start, end in self.regions) / SAMPLE_RATE

    def after(self, seconds: float) -> Chunk:
        """The chunk's speech from `seconds` into it on."""
        skip, regions = round(seconds * SAMPLE_RATE), []
        for start, end in self.regions:
            if skip >= end - start:
                skip -= end - start
                continue
            regions.append((start + skip, end))
            skip = 0
        offset = self.offset + seconds
        return Chunk(self.source, tuple(regions), offset, tuple(gap for gap in self.gaps if gap > offset), self.context)


class SpeechClock:
    """Maps times on the speech-only clock (the chunks laid end to end) back to the audio's."""

    def __init__(self) -> None:
        self._speech: list[dict] = []
        self._map: SpeechTimestampsMap | None = None

    def extend(self, speech: list[dict]) -> None:
        """Add speech regions (in samples, on the audio's clock) after those it has."""
        self._speech = self._speech + speech
        self._map = SpeechTimestampsMap(self._speech, SAMPLE_RATE) if self._speech else None

    def start(self, seconds: float) -> float:
        """A start at a region's end is the next region's start: the speech after the cut."""
        if self._map is None:
            return float(seconds)
        region = min(bisect.bisect(self._map.chunk_end_sample, round(seconds * SAMPLE_RATE)), len(self._speech) - 1)
        return float(self._map.get_original_time(seconds, region))

    def end(self, seconds: float) -> float:
        """An end at a region's end is that region's: the speech before the cut."""
        if self._map is None:
            return float(seconds)
        region = min(bisect.bisect_left(self._map.chunk_end_sample, round(seconds * SAMPLE_RATE)), len(self._speech) - 1)
        return float(self._map.get_original_time(seconds, region))

    def word(self, start: float, end: float) -> tuple[float, float]:
        if self._map is None:
            return float(start), float(end)
        # Both ends of a word on the same speech region, as faster-whisper does.
        region = self._map.get_chunk_index((start + end) / 2)
        return float(self._map.get_original_time(start, region)), float(self._map.get_original_time(end, region))


@dataclass(frozen=True, slots=True)
class Cut:
    """Chunks of speech, and the speech regions (samples, on the audio's clock) they hold."""

    chunks: list[Chunk]
    speech: list[dict]

    @property
    def speech_seconds(self) -> float:
        return sum(region["end"] - region["start"] for region in self.speech) / SAMPLE_RATE

    def with_context(self, context: tuple[int, ...]) -> Cut:
        return Cut([replace(chunk, context=context) for chunk in self.chunks], self.speech) if context else self


def _speech(audio: np.ndarray, start: int = 0) -> list[dict]:
    options = VadOptions(max_speech_duration_s=CHUNK_SECONDS, min_silence_duration_ms=160)
    return [{"start": r["start"] + start, "end": r["end"] + start} for r in get_speech_timestamps(audio[start:], options)]


def _chunks(audio: np.ndarray, speech: list[dict], offset: float) -> Cut:
    """The speech regions grouped, in order, into chunks of at most CHUNK_SECONDS (a region longer
    than that alone), as faster-whisper's `collect_chunks` groups them."""
    if not speech:
        return Cut([], [])
    # Where silence was cut out, in samples of speech before it (as SpeechTimestampsMap counts).
    gaps, before = [], 0
    for region, following in zip(speech, speech[1:]):
        before += region["end"] - region["start"]
        if following["start"] - region["end"] >= GAP_SAMPLES:
            gaps.append(before)
    groups: list[list[tuple[int, int]]] = [[]]
    size = 0
    for region in speech:
        length = region["end"] - region["start"]
        if groups[-1] and size + length > CHUNK_SECONDS * SAMPLE_RATE:
            groups.append([])
            size = 0
        groups[-1].append((region["start"], region["end"]))
        size += length
    chunks, first = [], 0
    for regions in groups:
        length = sum(end - start for start, end in regions)
        if not length:
            continue
        inside = tuple(offset + gap / SAMPLE_RATE for gap in gaps if first < gap < first + length)
        chunks.append(Chunk(audio, tuple(regions), offset + first / SAMPLE_RATE, inside))
        first += length
    return Cut(chunks, speech)


def cut_head(audio: np.ndarray) -> tuple[Cut, int | None]:
    """The speech of the audio's first minute in chunks of at most 30 s, cut at silences found
    by the Silero VAD, and the sample where the rest starts (None: there is no rest).

    A file of more than a minute gives its first words sooner: its VAD takes a while (about
    0.6 s for 150 s on a core), so the first chunk decodes while the rest is cut (`cut_rest`),
    the head ending where its last speech region starts, so that no word is cut in two; and
    its first chunk holds only about 10 s of speech (`_first_chunk_apart`), which decodes
    sooner than 30 s (tiny.en on a core: about 1.0 s against 1.7 s). A shorter file is a
    chunk or two, decoding at once side by side: an extra chunk would cost it another pass of
    the encoder and gain nothing.
    """
    if len(audio) > HEAD_SECONDS * SAMPLE_RATE:
        speech = _speech(audio[: HEAD_SECONDS * SAMPLE_RATE])
        if len(speech) >= 2:
            return _first_chunk_apart(audio, speech[:-1]), speech[-1]["start"]
    return _chunks(audio, _speech(audio), 0.0), None


def _first_chunk_apart(audio: np.ndarray, speech: list[dict]) -> Cut:
    """The speech in chunks, the first of them its leading regions up to the first silence after
    FIRST_CHUNK_SECONDS of speech."""
    first, seconds = 0, 0.0
    while first < len(speech) and seconds < FIRST_CHUNK_SECONDS:
        seconds += (speech[first]["end"] - speech[first]["start"]) / SAMPLE_RATE
        first += 1
    head = _chunks(audio, speech[:first], 0.0)
    rest = _chunks(audio, speech[first:], head.speech_seconds)
    return Cut(head.chunks + rest.chunks, speech)


def cut_rest(audio: np.ndarray, start: int, offset: float) -> Cut:
    """The speech from sample `start` on, in chunks whose speech-clock offsets follow `offset`
    (the seconds of speech before it). The VAD hears it VAD_PIECE_SAMPLES at a time, each piece
    but the last ending where its last speech region starts, as the head does, so that no
    region is cut in two."""
    speech: list[dict] = []
    while start < len(audio):
        end = start + VAD_PIECE_SAMPLES
        found = _speech(audio[:end], start)
        if end >= len(audio):
            speech += found
            break
        if len(found) >= 2 or (found and found[0]["start"] > start):
            speech += found[:-1]
            start = found[-1]["start"]
        else:  # silence, or a region at the piece's start and silence after it
            speech += found
            start = end
    return _chunks(audio, speech, offset)


def context_tokens(whisper: WhisperModel, text: str | None, count: int) -> tuple[int, ...]:
    """The last `count` tokens of `text` (words said before the audio), as Whisper's prompt
    holds them."""
    if not text or not text.strip() or count <= 0:
        return ()
    return tuple(whisper.hf_tokenizer.encode(" " + text.strip(), add_special_tokens=False).ids[-count:])


def detect_language(whisper: WhisperModel, audio: np.ndarray) -> tuple[str, float]:
    """The language spoken in the first 30 s of `audio` (the speech of the first chunks)."""
    if not whisper.model.is_multilingual:
        return "en", 1.0
    features = whisper.feature_extractor(audio[: CHUNK_SECONDS * SAMPLE_RATE])
    language, probability, _ = whisper.detect_language(features=features)
    return language, probability


def options_for(whisper: WhisperModel, key: DecodeKey) -> tuple[Tokenizer, TranscriptionOptions]:
    """The tokenizer and the options of faster-whisper's batched transcribe for this key."""
    tokenizer = Tokenizer(whisper.hf_tokenizer, whisper.model.is_multilingual, task=key.task, language=key.language)
    options = TranscriptionOptions(
        beam_size=key.beam_size,
        best_of=_DEFAULTS["best_of"],
        patience=_DEFAULTS["patience"],
        length_penalty=_DEFAULTS["length_penalty"],
        repetition_penalty=_DEFAULTS["repetition_penalty"],
        no_repeat_ngram_size=_DEFAULTS["no_repeat_ngram_size"],
        log_prob_threshold=_DEFAULTS["log_prob_threshold"],
        no_speech_threshold=_DEFAULTS["no_speech_threshold"],
        compression_ratio_threshold=_DEFAULTS["compression_ratio_threshold"],
        condition_on_previous_text=False,
        prompt_reset_on_temperature=_DEFAULTS["prompt_reset_on_temperature"],
        temperatures=[key.temperature],
        initial_prompt=key.prompt,
        prefix=None,
        suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        without_timestamps=False,  # segments of a few seconds, for subtitles, not one a chunk
        max_initial_timestamp=0.0,
        word_timestamps=key.word_timestamps,
        prepend_punctuations=_DEFAULTS["prepend_punctuations"],
        append_punctuations=_DEFAULTS["append_punctuations"],
        multilingual=False,
        max_new_tokens=None,
        clip_timestamps=[],
        hallucination_silence_threshold=None,
        hotwords=None,
    )
    return tokenizer, options


def encoder_frames(key: DecodeKey, chunks: list[Chunk]) -> int:
    """The encoder's window for a batch, in feature frames: Whisper's whole 30 s, or the window
    `key.window` fits to the longest chunk (an even number of frames: the encoder halves them)."""
    if key.window is None:
        return N_FRAMES
    seconds = max(key.window.least_s, max(chunk.seconds for chunk in chunks) + key.window.margin_s)
    return min(N_FRAMES, 2 * ceil(seconds * FRAMES_PER_S / 2))


def decode_batch(whisper: WhisperModel, key: DecodeKey, chunks: list[Chunk], *, passes: int = REST_PASSES) -> list[list[dict]]:
    """Decode the chunks in one batch: for each chunk, its segments as faster-whisper's dicts,
    times on the speech-only clock. Where Whisper left a chunk's last segment unfinished, the
    speech after its last finished segment decodes again, the rests of the batch's chunks in
    one more batch, up to `passes` more."""
    decoded, rests = _decode_once(whisper, key, chunks)
    unfinished = [(row, rest) for row, rest in enumerate(rests) if rest is not None]
    if unfinished and passes > 0:
        again = decode_batch(whisper, key, [rest for _, rest in unfinished], passes=passes - 1)
        for (row, _), segments in zip(unfinished, again):
            decoded[row] += segments
    return decoded


def _decode_once(whisper: WhisperModel, key: DecodeKey, chunks: list[Chunk]) -> tuple[list[list[dict]], list[Chunk | None]]:
    """The chunks' segments, and for each chunk whose last segment Whisper left unfinished, the
    speech after its finished ones (None: it finished, or less than REST_SECONDS is left)."""
    tokenizer, options = options_for(whisper, key)
    shared = tokenizer.encode(options.initial_prompt) if options.initial_prompt else []
    prompts = [
        whisper.get_prompt(tokenizer, [*shared, *chunk.context], without_timestamps=options.without_timestamps)
        for chunk in chunks
    ]
    assert len({len(prompt) for prompt in prompts}) == 1, "the chunks of a batch hold contexts of one length"
    window = encoder_frames(key, chunks)
    new_tokens = whisper.max_length - len(prompts[0])
    if window < N_FRAMES:
        new_tokens = min(ceil(window / FRAMES_PER_S * FITTED_TOKENS_PER_S), whisper.max_length // 2, new_tokens)
    features = np.stack([pad_or_trim(whisper.feature_extractor(chunk.audio)[..., :-1], window) for chunk in chunks])
    encoder_output = whisper.encode(features)
    outputs = _generate(whisper, encoder_output, prompts, options, max_length=len(prompts[0]) + new_tokens)
    decoded: list[list[dict]] = []
    rests: list[Chunk | None] = []
    for row, (chunk, output) in enumerate(zip(chunks, outputs)):
        frames = int(ceil(chunk.seconds) * whisper.frames_per_second)
        pieces, seek, _ = whisper._split_segments_by_timestamps(
            tokenizer=tokenizer,
            tokens=output["tokens"],
            time_offset=chunk.offset,
            segment_size=frames,
            segment_duration=chunk.seconds,
            seek=0,
        )
        end = chunk.offset + chunk.seconds  # Whisper's timestamp tokens can point past the chunk
        segments = [
            {
                "text": tokenizer.decode(piece["tokens"]),
                "tokens": piece["tokens"],
                "start": min(piece["start"], end),
                "end": min(piece["end"], end),
                "seek": int(chunk.offset * whisper.frames_per_second),
                "avg_logprob": output["avg_logprob"],
                "no_speech_prob": output["no_speech_prob"],
                "compression_ratio": get_compression_ratio(tokenizer.decode(piece["tokens"])),
            }
            for piece in pieces
        ]
        spanning = any(_spans_gap(segment, chunk.gaps) for segment in segments)
        if segments and (key.word_timestamps or spanning):
            # One chunk at a time: faster-whisper carries the last word's end from one segment
            # to the next, which would make a chunk's words depend on its neighbours in the batch.
            whisper.add_word_timestamps(
                [segments],
                tokenizer,
                _row(encoder_output, row, len(chunks)),
                [frames],
                options.prepend_punctuations,
                options.append_punctuations,
                last_speech_timestamp=chunk.offset,
            )
            _within_stretches(segments, chunk)
        if spanning:
            segments = [piece for segment in segments for piece in _split_at_gaps(segment, chunk.gaps, tokenizer)]
        decoded.append(segments)
        finished = seek / whisper.frames_per_second
        rests.append(chunk.after(finished) if 0 < finished <= chunk.seconds - REST_SECONDS else None)
    return decoded, rests


def _generate(
    whisper: WhisperModel,
    encoder_output: ctranslate2.StorageView,
    prompts: list[list[int]],
    options: TranscriptionOptions,
    *,
    max_length: int,
) -> list[dict]:
    """faster-whisper's batched generate (`BatchedInferencePipeline.generate_segment_batched`),
    but with each row's own prompt: for each row, its tokens, their mean log probability and
    the probability of no speech."""
    results = whisper.model.generate(
        encoder_output,
        prompts,
        beam_size=options.beam_size,
        patience=options.patience,
        length_penalty=options.length_penalty,
        max_length=max_length,
        suppress_blank=options.suppress_blank,
        suppress_tokens=options.suppress_tokens,
        return_scores=True,
        return_no_speech_prob=True,
        sampling_temperature=options.temperatures[0],
        repetition_penalty=options.repetition_penalty,
        no_repeat_ngram_size=options.no_repeat_ngram_size,
    )
    outputs = []
    for result in results:
        tokens = result.sequences_ids[0]
        log_probability = result.scores[0] * (len(tokens) ** options.length_penalty)
        outputs.append(
            {"avg_logprob": log_probability / (len(tokens) + 1), "no_speech_prob": result.no_speech_prob, "tokens": tokens}
        )
    return outputs


def _within_stretches(segments: list[dict], chunk: Chunk) -> None:
    """Each word within the chunk's stretch of speech its middle is in (the alignment can stretch
    a word over a cut, or past the chunk's end), each segment from its first word's start to its
    last word's end."""
    bounds = (chunk.offset, *chunk.gaps, chunk.offset + chunk.seconds)
    for segment in segments:
        for word in segment["words"]:
            at = bisect.bisect(chunk.gaps, (word["start"] + word["end"]) / 2)
            low, high = bounds[at], bounds[at + 1]
            word["start"], word["end"] = min(max(word["start"], low), high), min(max(word["end"], low), high)
        if segment["words"]:
            segment["start"], segment["end"] = segment["words"][0]["start"], segment["words"][-1]["end"]


def _spans_gap(segment: dict, gaps: tuple[float, ...]) -> bool:
    return any(segment["start"] < gap < segment["end"] for gap in gaps)


def _split_at_gaps(segment: dict, gaps: tuple[float, ...], tokenizer: Tokenizer) -> list[dict]:
    """The segment in pieces, one for each stretch of speech between the gaps its words fall
    in (a word where its middle is), each with its words and its share of the text and tokens:
    the pieces' texts joined are the segment's. A segment whose words do not spell out its
    text stays whole; one without words over a gap has no text to place, and goes."""
    words = segment.get("words") or []
    if not words:
        return [segment] if segment["text"].strip() or not _spans_gap(segment, gaps) else []
    groups: list[list[dict]] = []
    stretch = None
    for word in words:
        at = bisect.bisect(gaps, (word["start"] + word["end"]) / 2)
        if at != stretch:
            groups.append([])
            stretch = at
        groups[-1].append(word)
    if len(groups) == 1:
        return [segment]  # its times are its words' (`to_segment`), on one side of every gap
    texts = ["".join(word["word"] for word in group) for group in groups]
    tokens = _share_tokens(segment["tokens"], texts, tokenizer) if "".join(texts) == segment["text"] else None
    if tokens is None:
        return [segment]
    return [
        segment
        | {
            "text": text,
            "tokens": piece,
            "start": group[0]["start"],
            "end": group[-1]["end"],
            "words": group,
            "compression_ratio": get_compression_ratio(text),
        }
        for text, piece, group in zip(texts, tokens, groups)
    ]


def _share_tokens(tokens: list[int], texts: list[str], tokenizer: Tokenizer) -> list[list[int]] | None:
    """`tokens` cut where they decode to each of `texts` in turn (None: nowhere)."""
    shares, start = [], 0
    for text in texts[:-1]:
        end = start
        while tokenizer.decode(tokens[start:end]) != text:
            end += 1
            if end > len(tokens):
                return None
        shares.append(tokens[start:end])
        start = end
    return [*shares, tokens[start:]]


def _row(encoder_output: ctranslate2.StorageView, row: int, rows: int) -> ctranslate2.StorageView:
    """One chunk's encoder output out of a batch's, on the device it is on."""
    if rows == 1:
        return encoder_output
    if encoder_output.device == "cuda":
        import torch

        return ctranslate2.StorageView.from_array(torch.as_tensor(encoder_output, device="cuda")[row : row + 1].contiguous())
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(encoder_output)[row : row + 1]))


def to_segment(number: int, raw: dict, clock: SpeechClock, duration: float, key: DecodeKey) -> Segment:
    """A decoded segment on the audio's clock; no time past the audio's end (Whisper's timestamp
    tokens can point past it). Where its words were timed, its times are theirs, and its words
    are kept where the request asked for them."""

    def clamp(seconds: float) -> float:
        return min(seconds, duration)

    words = None
    if raw.get("words"):
        words = []
        for word in raw["words"]:
            start, end = clock.word(word["start"], word["end"])
            words.append(Word(clamp(start), clamp(end), word["word"], float(word["probability"])))
    start, end = (words[0].start, words[-1].end) if words else (clamp(clock.start(raw["start"])), clamp(clock.end(raw["end"])))
    if key.word_timestamps and words is None:
        words = []
    return Segment(
        id=number,
        start=start,
        end=end,
        text=raw["text"],
        seek=raw["seek"],
        tokens=list(raw["tokens"]),
        temperature=key.temperature,
        avg_logprob=float(raw["avg_logprob"]),
        compression_ratio=float(raw["compression_ratio"]),
        no_speech_prob=float(raw["no_speech_prob"]),
        words=words if key.word_timestamps else None,
    )
