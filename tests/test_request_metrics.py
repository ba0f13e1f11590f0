"""Requests counted by route template, method and status (serve_app/api/request_metrics.py),
in-process: the real app and edge over stand-in handles (tests/fakes.py), its recorder keeping
what it is given. The slow lane scrapes the same counter from Ray (test_metrics_service.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import InProcess, as_user

from serve_app.metrics import HTTP_REQUESTS

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def counted(app: InProcess, method: str, path: str, **kwargs) -> dict[str, str]:
    """The one count a request leaves, after checking it left exactly one."""
    before = len(app.metrics.tagged(HTTP_REQUESTS))
    async with app.client() as http:
        await http.request(method, path, **kwargs)
    (count,) = app.metrics.tagged(HTTP_REQUESTS)[before:]
    return count


async def test_requests_are_counted_by_the_route_they_matched_not_their_path(tmp_path: Path) -> None:
    app = InProcess(tmp_path)
    assert await counted(app, "GET", "/v1/models") == {"route": "/v1/models", "method": "GET", "status": "200"}
    assert await counted(app, "GET", "/v1/models/tiny.en") == {"route": "/v1/models/{id:path}", "method": "GET", "status": "200"}
    assert await counted(app, "GET", "/v1/models/no-such-model") == {
        "route": "/v1/models/{id:path}",
        "method": "GET",
        "status": "404",
    }
    # go-whisper's /api/v1 alias is the same route.
    assert (await counted(app, "GET", "/api/v1/models/other"))["route"] == "/v1/models/{id:path}"
    assert await counted(app, "GET", "/transcription/job/abc123") == {
        "route": "/transcription/job/{id}",
        "method": "GET",
        "status": "404",
    }


async def test_refusals_of_the_edge_and_of_the_routes_are_counted_with_their_status(tmp_path: Path) -> None:
    app = InProcess(tmp_path)
    assert await counted(app, "DELETE", "/v1/ping") == {"route": "/v1/ping", "method": "DELETE", "status": "405"}
    assert await counted(app, "POST", "/v1/audio/transcriptions", content=b"x", headers={"Content-Type": "text/plain"}) == {
        "route": "/v1/audio/transcriptions",
        "method": "POST",
        "status": "400",
    }
    too_big = {"Content-Length": str(app.settings.max_upload_bytes + 1), "Content-Type": "multipart/form-data; boundary=x"}
    assert (await counted(app, "POST", "/v1/audio/transcriptions", headers=too_big))["status"] == "413"


async def test_a_request_without_a_key_is_counted_as_refused(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text("user-key\n")
    app = InProcess(tmp_path, allow_anonymous=False, api_keys_file=tmp_path / "keys")
    assert (await counted(app, "GET", "/v1/models"))["status"] == "401"
    assert (await counted(app, "GET", "/v1/models", headers=as_user("user-key")))["status"] == "200"


async def test_paths_and_methods_no_route_knows_cannot_make_new_series(tmp_path: Path) -> None:
    app = InProcess(tmp_path)
    for n in range(5):
        assert await counted(app, "GET", f"/probe/{n}/admin.php") == {"route": "unmatched", "method": "GET", "status": "404"}
    assert (await counted(app, "BREW", "/v1/models"))["method"] == "other"
    assert len({tuple(sorted(tags.items())) for tags in app.metrics.tagged(HTTP_REQUESTS)}) == 2
