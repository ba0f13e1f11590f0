"""The job API's core, without Ray: jobs, where they may read and write, their outputs, the
durable queue, the scheduler that runs its jobs, and the callbacks. The JobQueue deployment
and the routes sit on top."""

from serve_app.jobs.callbacks import (
    SIGNATURE_HEADER,
    Attempt,
    CallbackSettings,
    Delivery,
    deliver_pending,
    post_callback,
    send_callback,
    sign,
    verify_signature,
)
from serve_app.jobs.job import (
    DEFAULT_PRIORITY,
    JOB_FORMATS,
    OUTPUT_FORMATS,
    Job,
    JobStatus,
    callback_body,
    check_callback_url,
    parse_submission,
)
from serve_app.jobs.lease import keep_lease
from serve_app.jobs.models import HandleModels, JobModels
from serve_app.jobs.outputs import output_names, write_outputs
from serve_app.jobs.paths import JobFolders
from serve_app.jobs.scheduler import JobScheduler
from serve_app.jobs.store import JobStore, PendingCallback, Recovery
from serve_app.jobs.submission import admit_submission
from serve_app.jobs.targets import callback_client, check_callback

__all__ = [
    "DEFAULT_PRIORITY",
    "JOB_FORMATS",
    "OUTPUT_FORMATS",
    "SIGNATURE_HEADER",
    "Attempt",
    "CallbackSettings",
    "Delivery",
    "HandleModels",
    "Job",
    "JobFolders",
    "JobModels",
    "JobScheduler",
    "JobStatus",
    "JobStore",
    "PendingCallback",
    "Recovery",
    "admit_submission",
    "callback_body",
    "callback_client",
    "check_callback",
    "check_callback_url",
    "deliver_pending",
    "keep_lease",
    "output_names",
    "parse_submission",
    "post_callback",
    "send_callback",
    "sign",
    "verify_signature",
    "write_outputs",
]
