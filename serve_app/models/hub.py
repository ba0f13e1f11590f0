"""Models from the Hugging Face hub: what a `POST /v1/models` path names, and fetching only the
files that model needs, through `huggingface_hub` itself so that HF_ENDPOINT, HF_TOKEN and
HF_HUB_OFFLINE mean what users of the hub expect.

    resolve(path)                -> HubSource    pure: ids and aliases; BadRequest for what we cannot fetch
    inspect(source)              -> HubListing   one hub call (two for a pipeline): commit, kind, files, sizes
    download(listing, folder)    -> HubListing   those files into `folder`, with progress

Every failure of the hub or of the transfer leaves here as a ServiceError whose reason says what
to do (404 no such repository, 401/403 set HF_TOKEN, 502 the hub cannot be reached (naming
HF_ENDPOINT and HF_HUB_OFFLINE), failed or broke off), never as
one of huggingface_hub's or httpx's exceptions.
"""

from __future__ import annotations

import errno
import fnmatch
import posixpath
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import yaml
from faster_whisper.utils import _MODELS as _FASTER_WHISPER_MODELS
from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
    XetDownloadError,
)
from huggingface_hub.utils import validate_repo_id

from serve_app.errors import BadGateway, BadRequest, Forbidden, NotFound, ServiceError, Unauthorized
from serve_app.models.ids import is_folder_safe, model_id_for_file, model_id_for_repo

__all__ = [
    "PROGRESS_INTERVAL",
    "SIZES",
    "WHISPER_FILES",
    "HubListing",
    "HubSource",
    "Progress",
    "download",
    "inspect",
    "resolve",
]

Progress = Callable[[dict[str, Any]], None]
"""Called with `{"status": "downloading model.bin", "total": bytes, "completed": bytes}`;
`total` is left out while it is unknown."""

SIZES: dict[str, str] = dict(_FASTER_WHISPER_MODELS)
"""faster-whisper's size names and the hub repositories of their CTranslate2 models: the one
table of them, so `large` and `turbo` mean here what they mean to faster-whisper."""

WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.*", "preprocessor_config.json")
"""What faster-whisper loads from a CTranslate2 Whisper repository (its own download's allow-list)."""

PROGRESS_INTERVAL = 0.25
"""Seconds between progress reports within a file; a file's start and end are always reported."""

_PIPELINE_SKIPPED = ("*.md", "*.png", "*.jpg", "*.jpeg", "*.gif", "*.svg")  # docs and pictures
# go-whisper's file names: a quantization suffix (-q5_0, -q8_0) and tinydiarize's -tdrz
# (ggml-small.en-tdrz.bin) name the weights of that size; speakers come from the Diarizer.
_GGML = re.compile(r"ggml-(?P<size>.+?)(?:-tdrz)?(?:-q\d(?:_[0-9a-z]+)?)?(?:\.bin)?")
_UNREACHABLE = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.UnsupportedProtocol)
"""What httpx raises when no connection to the hub could be made at all (refused, no route, no
such host, a timeout while connecting, an HF_ENDPOINT that is no http(s) URL)."""
_REVISION = re.compile(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")  # branches, tags, commits, refs/pr/1
_WHAT_TO_SEND = (
    "send a faster-whisper size (tiny.en, base, large-v3, turbo, ...), a hub repository id "
    "(org/name, optionally @revision) or a go-whisper file name (ggml-large-v3.bin)"
)


@dataclass(frozen=True, slots=True)
class HubSource:
    """A model on the hub, named as the user named it."""

    path: str
    """What the user sent."""
    repo_id: str
    revision: str | None
    """None: the repository's default branch."""
    model_id: str
    """The catalogue id: the size name, go-whisper's id for a ggml file, or the repository's id."""
    aliases: tuple[str, ...]
    """Other names that mean exactly these files, so the model is found by any of them."""
    kind: str
    """A guess from the name ("transcription" or "diarization"); `inspect` reads the real one."""

    @property
    def label(self) -> str:
        """The catalogue's `source` field: where the files came from."""
        return f"hub:{self.repo_id}" + (f"@{self.revision}" if self.revision else "")

    @property
    def names(self) -> tuple[str, ...]:
        """Every name a present model may answer to for this source to be satisfied by it."""
        return (self.model_id, *self.aliases)


@dataclass(frozen=True, slots=True)
class HubListing:
    """What `inspect` found in the repository: which of its files to fetch, and what they make."""

    source: HubSource
    commit: str
    """Every file is fetched from this one commit, even if the branch moves during the download."""
    kind: str
    """"transcription" (a CTranslate2 Whisper model) or "diarization" (a pyannote pipeline)."""
    files: tuple[tuple[str, int | None], ...]
    """Each file's name in the repository and its size in bytes (None where the hub did not say)."""

    @property
    def total_bytes(self) -> int | None:
        sizes = [size for _name, size in self.files]
        return None if None in sizes else sum(sizes)  # type: ignore[arg-type]


def resolve(path: str) -> HubSource:
    """Which hub repository `path` names, and the id and aliases its model gets.

    Raises BadRequest, with what to send instead, for an empty path, one that would reach outside
    the model folder, or one that names nothing we can fetch. Makes no network call.
    """
    path = path.strip()
    if not path:
        raise BadRequest("missing path")
    if "://" in path:
        raise BadRequest(f"{path} is a URL, not a model name: {_WHAT_TO_SEND}")
    _refuse_escapes(path)
    name, at, revision = path.partition("@")
    if at and not _REVISION.fullmatch(revision):
        raise BadRequest(f"{path} has no valid revision after '@': give a branch, tag or commit, as in org/name@main")
    if "/" in name:
        return _repo_source(path, name, revision or None)
    if at:
        raise BadRequest(f"a revision goes with a hub repository id (org/name@{revision}), not with {name}")
    lowered = name.lower()
    if lowered in SIZES:
        return _source(path, SIZES[lowered], None, lowered, _other_sizes(SIZES[lowered], lowered), "transcription")
    ggml = _GGML.fullmatch(lowered)
    if ggml is None:
        raise BadRequest(f"{path} is not a model we can serve: {_WHAT_TO_SEND}")
    if ggml["size"] not in SIZES:
        raise BadRequest(
            f"{path} has no CTranslate2 equivalent: go-whisper names we map are ggml-<size>[-q...].bin "
            f"with a size among {', '.join(SIZES)}"
        )
    model_id = model_id_for_file(lowered if lowered.endswith(".bin") else f"{lowered}.bin")
    # Only the file name as alias: a size name or repository id here would make `large-v3` find
    # this model before the one whose id it is.
    return _source(path, SIZES[ggml["size"]], None, model_id, (f"{model_id}.bin",), "transcription")


def _refuse_escapes(path: str) -> None:
    if "\\" in path or "\0" in path or path.startswith("/") or any(part in ("", ".", "..") for part in path.split("/")):
        raise BadRequest(f"path {path!r} would reach outside the model folder: {_WHAT_TO_SEND}")


def _repo_source(path: str, repo_id: str, revision: str | None) -> HubSource:
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise BadRequest(
            f"{path} is not a hub repository id: that is org/name, each of letters, digits, '-', '_' and '.'; {_WHAT_TO_SEND}"
        ) from None
    model_id = model_id_for_repo(repo_id, revision)
    if revision:
        aliases: tuple[str, ...] = (f"{repo_id}@{revision}",)
    else:
        aliases = _other_sizes(repo_id, model_id)
    lowered = repo_id.lower()
    kind = "diarization" if lowered.startswith(("pyannote/", "pyannoteai/")) or "diariz" in lowered else "transcription"
    return _source(path, repo_id, revision, model_id, aliases, kind)


def _other_sizes(repo_id: str, model_id: str) -> tuple[str, ...]:
    """The repository itself and the size names that mean it (`large` and `large-v3`), but the id."""
    names = [repo_id] if repo_id != model_id else []
    return (*names, *(size for size, repo in SIZES.items() if repo == repo_id and size != model_id))


def _source(path: str, repo_id: str, revision: str | None, model_id: str, aliases: tuple[str, ...], kind: str) -> HubSource:
    if not is_folder_safe(model_id):
        raise BadRequest(f"{path} would make the model id {model_id!r}, which cannot name a folder: {_WHAT_TO_SEND}")
    return HubSource(path=path, repo_id=repo_id, revision=revision, model_id=model_id, aliases=aliases, kind=kind)


def inspect(source: HubSource, *, endpoint: str | None = None, token: str | None = None) -> HubListing:
    """Read the repository's file list (and a pipeline's config.yaml) to learn what it holds.

    `endpoint` and `token` override HF_ENDPOINT and HF_TOKEN (None: those, as huggingface_hub
    reads them). Raises BadRequest for a repository that holds neither a CTranslate2 Whisper
    model nor a pyannote pipeline, and the errors of `download` for the hub's failures.
    """
    _refuse_offline(source)
    api = HfApi(endpoint=endpoint, token=token)
    with _hub_errors(source, endpoint):
        info = api.model_info(
            source.repo_id, revision=source.revision, files_metadata=True, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT
        )
    sizes = {sibling.rfilename: sibling.size for sibling in info.siblings or () if _stays_inside(sibling.rfilename)}
    commit = info.sha or source.revision or constants.DEFAULT_REVISION
    if "model.bin" in sizes and "config.json" in sizes:
        kind = "transcription"
        wanted = [name for name in sizes if "/" not in name and _matches(name, WHISPER_FILES)]
    elif "config.yaml" in sizes and _is_pipeline(source, commit, endpoint=endpoint, token=token):
        kind = "diarization"
        wanted = [name for name in sizes if not _matches(posixpath.basename(name), _PIPELINE_SKIPPED)]
    else:
        raise BadRequest(
            f"{source.repo_id} is not a model we can serve: it holds neither a CTranslate2 Whisper model "
            "(model.bin and config.json) nor a pyannote pipeline (config.yaml with a pipeline section)"
        )
    # Small files first: a repository that cannot be read fails before the big transfer starts.
    wanted.sort(key=lambda name: (sizes[name] is None, sizes[name] or 0, name))
    return HubListing(source=source, commit=commit, kind=kind, files=tuple((name, sizes[name]) for name in wanted))


def download(
    source: HubSource | HubListing,
    folder: Path,
    *,
    progress: Progress,
    endpoint: str | None = None,
    token: str | None = None,
    interval: float = PROGRESS_INTERVAL,
) -> HubListing:
    """Fetch the model's files into `folder`, an empty folder the caller made and will rename into
    place (or delete, if this raises); returns the listing it fetched.

    Given a HubSource it calls `inspect` first; given the listing `inspect` returned, it fetches
    exactly those files at that commit, so a caller that needed the kind before writing gets what
    it was told. `progress` is called from this thread, at most every `interval` seconds within a
    file. Raises NotFound (repository, revision or file), Unauthorized or Forbidden (gated or
    private: set HF_TOKEN), BadGateway (hub unreachable, failing, or the transfer broke off;
    HF_HUB_OFFLINE set), ServiceError (the model folder is full or unwritable).
    """
    listing = source if isinstance(source, HubListing) else inspect(source, endpoint=endpoint, token=token)
    _refuse_offline(listing.source)
    _check_space(listing, folder)
    meter = _Meter(progress, listing.total_bytes, interval=interval)
    bar = meter.bar_class()
    for name, _size in listing.files:
        meter.start(name)
        with _hub_errors(listing.source, endpoint, filename=name):
            hf_hub_download(
                listing.source.repo_id,
                name,
                revision=listing.commit,
                local_dir=folder,
                endpoint=endpoint,
                token=token,
                tqdm_class=bar,
            )
        meter.finish((folder / name).stat().st_size)
    # huggingface_hub keeps its per-file metadata and locks there; the model folder is ours.
    shutil.rmtree(folder / ".cache", ignore_errors=True)
    return listing


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _stays_inside(name: str) -> bool:
    """A file name from the hub that lands inside the model folder and is not hidden."""
    parts = name.split("/")
    return "\\" not in name and all(part and not part.startswith(".") for part in parts)


def _is_pipeline(source: HubSource, commit: str, *, endpoint: str | None, token: str | None) -> bool:
    """Whether the repository's config.yaml describes a pyannote pipeline (a `pipeline:` section
    with its class `name`), not a lone pyannote model or something else."""
    with tempfile.TemporaryDirectory(prefix="whisper-serve-") as scratch:
        with _hub_errors(source, endpoint, filename="config.yaml"):
            config = hf_hub_download(
                source.repo_id,
                "config.yaml",
                revision=commit,
                local_dir=scratch,
                endpoint=endpoint,
                token=token,
                tqdm_class=_Bar,
            )
        try:
            content = yaml.safe_load(Path(config).read_text())
        except (yaml.YAMLError, UnicodeDecodeError):
            return False
    pipeline = content.get("pipeline") if isinstance(content, dict) else None
    return isinstance(pipeline, dict) and "name" in pipeline


def _refuse_offline(source: HubSource) -> None:
    if constants.is_offline_mode():
        raise BadGateway(_offline_reason(source))


def _offline_reason(source: HubSource) -> str:
    return f"downloads from the hub are off on this server (HF_HUB_OFFLINE is set): unset it to download {source.path}"


def _check_space(listing: HubListing, folder: Path) -> None:
    total = listing.total_bytes
    free = shutil.disk_usage(folder).free
    if total is not None and total > free:
        raise ServiceError(
            f"{listing.source.repo_id} needs {total / 1e6:.0f} MB and the model folder has {free / 1e6:.0f} MB free: "
            "delete models or give model_dir more space"
        )


@contextmanager
def _hub_errors(source: HubSource, endpoint: str | None, *, filename: str | None = None) -> Iterator[None]:
    """Turn what huggingface_hub and httpx raise into ServiceErrors with a reason a user can act on.

    The order matters: most of huggingface_hub's errors are also OSErrors.
    """
    repo = source.repo_id
    hub = (endpoint or constants.ENDPOINT).rstrip("/")
    try:
        yield
    except OfflineModeIsEnabled as error:
        raise BadGateway(_offline_reason(source)) from error
    except GatedRepoError as error:
        if error.response.status_code == 403:
            raise Forbidden(
                f"{repo} is gated and the token in HF_TOKEN has no access to it: accept its conditions at "
                f"{hub}/{repo} with that token's account"
            ) from error
        raise Unauthorized(
            f"{repo} is gated: accept its conditions at {hub}/{repo}, then set HF_TOKEN to a token of that "
            "account where the service runs"
        ) from error
    except RepositoryNotFoundError as error:
        raise NotFound(
            f"the hub at {hub} has no model repository {repo} (if it is private, set HF_TOKEN to a token that can read it)"
        ) from error
    except RevisionNotFoundError as error:
        raise NotFound(f"{repo} has no revision {source.revision or constants.DEFAULT_REVISION}") from error
    except RemoteEntryNotFoundError as error:
        raise NotFound(f"{repo} has no file {filename or '(unknown)'} at {source.revision or 'its default branch'}") from error
    except HfHubHTTPError as error:
        status = error.response.status_code
        if status == 401:
            raise Unauthorized(f"the hub refused the token for {repo}: set HF_TOKEN to a valid token") from error
        if status == 403:
            raise Forbidden(f"the hub does not let this token read {repo}: set HF_TOKEN to a token that can") from error
        if status == 404:
            raise NotFound(f"the hub at {hub} has nothing at {repo}" + (f" for {filename}" if filename else "")) from error
        raise BadGateway(f"the hub at {hub} answered {status} for {repo}: try again later") from error
    except LocalEntryNotFoundError as error:
        # huggingface_hub's word for "the HEAD call failed and nothing is cached": the cause says why.
        raise BadGateway(_unreachable_reason(hub, repo, error.__cause__ or error)) from error
    except _UNREACHABLE as error:
        raise BadGateway(_unreachable_reason(hub, repo, error)) from error
    except (httpx2.HTTPError, XetDownloadError) as error:
        raise BadGateway(f"the download of {repo} from {hub} broke off: {_first_line(error)}") from error
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ServiceError(
                f"the model folder is full: {repo} did not fit; delete models or give model_dir more space"
            ) from error
        if error.errno is None:  # huggingface_hub's own checks, such as a file shorter than announced
            raise BadGateway(f"the download of {repo} from {hub} broke off: {_first_line(error)}") from error
        raise ServiceError(f"could not write {repo} into the model folder: {error}") from error


def _unreachable_reason(hub: str, repo: str, cause: BaseException) -> str:
    return (
        f"cannot reach the hub at {hub} (HF_ENDPOINT) to download {repo}: {_first_line(cause)}. "
        "Let this server reach it, set HF_ENDPOINT to a hub or mirror it can reach, or, on a server "
        "meant to stay offline, set HF_HUB_OFFLINE=1 and copy the model into the model folder"
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class _Meter:
    """Adds up the bytes of every file of one download and reports them, at most every `interval`
    seconds within a file: huggingface_hub calls back per 10 MB chunk, and an SSE stream wants
    about one event a second."""

    def __init__(self, report: Progress, total: int | None, *, interval: float) -> None:
        self._report = report
        self._total = total
        self._interval = interval
        self._done = 0  # bytes of the files already fetched
        self._current = 0  # bytes of the file on its way
        self._name = ""
        self._last = 0.0
        self._previous: dict[str, Any] = {}

    def start(self, name: str) -> None:
        self._name, self._current = name, 0
        self._emit()

    def add(self, count: int) -> None:
        # Negative when huggingface_hub restarts a file whose resume the server refused.
        self._current = max(0, self._current + count)
        if time.monotonic() - self._last >= self._interval:
            self._emit()

    def finish(self, size: int) -> None:
        self._done, self._current = self._done + size, 0
        self._emit()

    def _emit(self) -> None:
        event: dict[str, Any] = {"status": f"downloading {self._name}"}
        if self._total is not None:
            event["total"] = self._total
        event["completed"] = self._done + self._current
        self._last = time.monotonic()
        if event != self._previous:  # a file's last chunk and its end say the same
            self._previous = event
            self._report(event)

    def bar_class(self) -> type[_Bar]:
        """A tqdm stand-in bound to this meter: huggingface_hub takes a class, not a callback."""
        return type("_MeterBar", (_Bar,), {"meter": self})


class _Bar:
    """What huggingface_hub calls where it would draw a tqdm bar: it draws nothing (a server's
    logs are no terminal) and passes the bytes to its meter. Having `update_transfer` makes
    huggingface_hub's Xet path use one bar per file, counting written bytes once."""

    meter: _Meter | None = None

    def __init__(self, *_args: Any, **kwargs: Any) -> None:
        self.n = kwargs.get("initial") or 0
        self.total = kwargs.get("total")
        self.disable = True

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.meter is not None:
            self.meter.add(n)

    def update_transfer(self, n: int = 1) -> None:
        """Bytes off the network (Xet); `update` already counts the bytes written."""

    def set_postfix_str(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    set_transfer_postfix_str = set_postfix_str
    refresh = set_postfix_str
    close = set_postfix_str

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
