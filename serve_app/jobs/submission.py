"""`POST /transcription/job` before the queue: every check a submission passes, in one order.

Bad input is refused here, with the reason, and never queued to fail later: the API being
off (403), then the body (400: fields, language, format, model, callback scheme), then the
paths (403 outside the folders, 400 missing or unusable), then the callback's host (403: not
in callback_hosts, or, without them, an address the URL shows is not public; see targets.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from serve_app.jobs.job import Job, parse_submission
from serve_app.jobs.paths import JobFolders
from serve_app.jobs.targets import check_callback

__all__ = ["admit_submission"]


def admit_submission(
    body: Any,
    *,
    folders: JobFolders,
    default_model: str,
    model_exists: Callable[[str], bool] | None = None,
    callback_hosts: Collection[str] | None = None,
) -> Job:
    """A new QUEUED job, ready for JobStore.submit, from the parsed JSON body; raises
    Forbidden or BadRequest with the reason (see parse_submission, JobFolders.admit and
    check_callback). Runs on the caller's thread and touches the disk: from async code,
    run it in a thread."""
    folders.require_enabled()
    job = parse_submission(body, default_model=default_model, model_exists=model_exists)
    job = folders.admit(job)
    if job.callback:
        check_callback(job.callback, callback_hosts)
    return job
