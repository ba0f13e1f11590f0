"""The Ray Data graph of a batch: decode tasks, then a pool of transcription actors.

    files ─► decode: Ray tasks, DECODE_CPUS each ─► transcribe: a pool of actors, each a
    WhisperEngine with the model loaded (and a pyannote pipeline with --diarize)

Ray pickles `decode_media` and `Transcribe` by their module's name; a worker imports this
package, and nothing here imports Ray Serve (serve_app.pipeline) at the top, so that each
decode worker starts quickly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from serve_app.batch.inputs import MediaFile
from serve_app.batch.plan import DECODE_CPUS, ActorPool, BatchSettings
from serve_app.engine.audio import SAMPLE_RATE, decode_audio
from serve_app.engine.budget import thread_budget
from serve_app.errors import ServiceError
from serve_app.models.catalogue import ModelInfo
from serve_app.options import DecodeOptions
from serve_app.transcript import Transcript

if TYPE_CHECKING:  # pyannote (and torch) load in the actors that diarize, not here
    from pyannote.audio.pipelines import SpeakerDiarization

__all__ = ["Transcribe", "connect", "decode_media", "transcripts"]


def decode_media(row: dict[str, Any]) -> dict[str, Any]:
    """A decode task: the file's audio at 16 kHz, or why it has none."""
    audio, error = np.zeros(0, dtype=np.float32), ""
    try:
        with open(row["path"], "rb") as media:
            audio = decode_audio(media)
    except ServiceError as failure:
        error = failure.reason
    except OSError as failure:
        error = f"cannot read the file ({failure.strerror or failure})"
    except Exception as failure:  # one file's fault must not stop the others
        error = f"decoding failed ({type(failure).__name__}: {failure})"
    return row | {"audio": audio, "duration": audio.size / SAMPLE_RATE, "error": error}


class Transcribe:
    """An actor of the transcription pool: a WhisperEngine and the batch's model it loaded (and, to
    diarize, a pyannote pipeline with the same threads and device), fed one decoded file a
    call. A file it cannot transcribe comes back with the reason."""

    def __init__(self, model: ModelInfo, engine: dict[str, Any], diarization_path: str | None = None) -> None:
        from serve_app.engine.whisper import WhisperEngine

        self.engine = WhisperEngine(**engine)
        self.whisper = self.engine.load(model.path)  # now: a model that cannot load stops the batch at once
        self.diarizer: SpeakerDiarization | None = None
        if diarization_path is not None:
            import torch

            from serve_app.diarization.pipeline import load_pipeline

            torch.set_num_threads(engine["cpu_threads"])
            self.diarizer = load_pipeline(diarization_path, device=engine["device"])

    def _label_speakers(self, diarizer: SpeakerDiarization, transcript: Transcript, audio: np.ndarray) -> None:
        from serve_app.diarization.pieces import joined
        from serve_app.diarization.pipeline import diarized_pieces
        from serve_app.diarization.speakers import assign_speakers

        found = joined(diarized_pieces(diarizer, audio))  # a long file in pieces, as the Diarizer does
        transcript.segments = assign_speakers(transcript.segments, found.exclusive)
        for segment in transcript.segments:
            segment.words = None  # timed for the speakers only (see serve_app/pipeline.py)
        transcript.turns = found.turns

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        transcripts, errors = [], []
        for audio, language, error in zip(batch["audio"], batch["language"], batch["error"], strict=True):
            transcript = None
            if not error:
                try:
                    audio = np.asarray(audio)
                    options = DecodeOptions(language=language or None, word_timestamps=self.diarizer is not None)
                    transcript = self.engine.transcribe(audio, self.whisper, options)
                    if self.diarizer is not None:
                        self._label_speakers(self.diarizer, transcript, audio)
                except ServiceError as failure:
                    error = failure.reason
                except Exception as failure:  # one file's fault must not stop the others
                    error = f"transcription failed ({type(failure).__name__}: {failure})"
            transcripts.append(transcript)
            errors.append(error)
        return {
            "path": batch["path"],
            "duration": batch["duration"],
            "transcript": _objects(transcripts),
            "error": _objects(errors),
        }


def _objects(values: list[Any]) -> np.ndarray:
    """A column of Python objects (Ray Data pickles them), one a row."""
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def connect(address: str | None) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS, as `ray job submit` sets it), else start
    a Ray of this host's cores, plus the one CPU the decode tasks share."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        # "local": never join a cluster another user started on this host.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        ray.init(address="local", num_cpus=cores + 1, include_dashboard=False, log_to_driver=False)


def transcripts(
    files: list[MediaFile], model: ModelInfo, pool: ActorPool, settings: BatchSettings, diarization_path: str | None = None
) -> Iterable[dict[str, Any]]:
    """The Ray Data pipeline over `files`: rows of {path, duration, transcript, error}, in the
    order they finish."""
    import ray.data
    from ray.data import ActorPoolStrategy, DataContext
    from ray.util.debug import log_once

    context = DataContext.get_current()
    context.enable_progress_bars = False  # the batch shows its own, in files and audio hours
    context.print_on_execution_start = False
    log_once("ray_data_progress_manager_disabled")  # Ray Data would say how to turn its bars on
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    items = [{"path": str(file.path), "language": file.language or ""} for file in files]
    workers, cpu_threads = thread_budget(pool.device, pool.cpus)  # what the actor's num_cpus gives it
    engine = {
        "device": pool.device,
        "compute_type": settings.compute_type,
        "workers": workers,
        "cpu_threads": cpu_threads,
        "beam_size": settings.beam_size,
    }
    dataset = (
        ray.data.from_items(items, override_num_blocks=len(items))  # a file a block: a decode task each
        .map(decode_media, num_cpus=DECODE_CPUS)
        .map_batches(
            Transcribe,
            fn_constructor_kwargs={"model": model, "engine": engine, "diarization_path": diarization_path},
            batch_size=1,
            batch_format="numpy",
            num_cpus=pool.cpus,
            num_gpus=pool.gpus,
            # Two files in flight an actor: the next is there when one ends, and at the end of
            # the batch no actor holds a queue while another idles.
            compute=ActorPoolStrategy(size=pool.actors, max_tasks_in_flight_per_actor=2),
        )
    )
    return dataset.iter_rows()
