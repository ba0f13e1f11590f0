"""The job API's core, without Ray: jobs, where they may read and write, their outputs, the
durable queue, the scheduler that runs its jobs, and the callbacks. The JobQueue deployment
and the routes sit on top."""

from serve_app.jobs.callbacks import (
    SIGNATURE_HEADER,
    CallbackSettings,
    Delivery,
    call_back,
    callback_body,
    send_callback,
    sign,
    verify_signature,
)
from serve_app.jobs.job import JOB_FORMATS, OUTPUT_FORMATS, Job, JobStatus, check_callback_url, parse_submission
from serve_app.jobs.lease import keep_lease
from serve_app.jobs.outputs import output_names, write_outputs
from serve_app.jobs.paths import JobFolders
from serve_app.jobs.scheduler import JobScheduler
from serve_app.jobs.store import JobStore, Recovery
from serve_app.jobs.submission import admit_submission
from serve_app.jobs.targets import callback_client, check_callback

__all__ = [
    "JOB_FORMATS",
    "OUTPUT_FORMATS",
    "SIGNATURE_HEADER",
    "CallbackSettings",
    "Delivery",
    "Job",
    "JobFolders",
    "JobScheduler",
    "JobStatus",
    "JobStore",
    "Recovery",
    "admit_submission",
    "call_back",
    "callback_body",
    "callback_client",
    "check_callback",
    "check_callback_url",
    "keep_lease",
    "output_names",
    "parse_submission",
    "send_callback",
    "sign",
    "verify_signature",
    "write_outputs",
]
