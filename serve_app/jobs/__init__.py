"""The job API's core, without Ray: jobs, where they may read and write, their outputs, the
durable queue and the callbacks. The JobQueue deployment and the routes sit on top."""

from .callbacks import (
    SIGNATURE_HEADER,
    CallbackSettings,
    Delivery,
    call_back,
    callback_body,
    send_callback,
    sign,
    verify_signature,
)
from .job import JOB_FORMATS, OUTPUT_FORMATS, Job, JobStatus, check_callback_url, parse_submission
from .outputs import output_names, write_outputs
from .paths import JobFolders
from .store import JobStore, Recovery
from .submission import admit_submission
from .targets import callback_client, check_callback

__all__ = [
    "JOB_FORMATS",
    "OUTPUT_FORMATS",
    "SIGNATURE_HEADER",
    "CallbackSettings",
    "Delivery",
    "Job",
    "JobFolders",
    "JobStatus",
    "JobStore",
    "Recovery",
    "admit_submission",
    "call_back",
    "callback_body",
    "callback_client",
    "check_callback",
    "check_callback_url",
    "output_names",
    "parse_submission",
    "send_callback",
    "sign",
    "verify_signature",
    "write_outputs",
]
