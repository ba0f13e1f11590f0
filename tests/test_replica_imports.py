"""What each deployment's replica imports when it starts: a replica imports its deployment's
module, and every library it pulls in costs each of those processes memory and the service's
cold start time. torch and pyannote belong to the Diarizer alone, faster-whisper and
CTranslate2 to the Transcriber (and the ModelStore, which reads faster-whisper's table of
model sizes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIARIZATION = {"torch", "torchaudio", "pyannote", "lightning", "speechbrain"}
TRANSCRIPTION = {"faster_whisper", "ctranslate2", "onnxruntime", "tokenizers"}
# In this order, from the lightest: each module is imported after those above it, in one
# process, so that a library one pulls in is caught at the first module that pulls it in.
MUST_NOT_IMPORT = {
    "deployments.ingress": DIARIZATION | TRANSCRIPTION,
    "deployments.job_queue": DIARIZATION | TRANSCRIPTION,
    "deployments.diarizer": DIARIZATION | TRANSCRIPTION,  # torch and pyannote load in its constructor
    "deployments.model_store": DIARIZATION,
    "deployments.transcriber": DIARIZATION,
}
REPORT = """
import importlib, json, sys
for module in sys.argv[1:]:
    importlib.import_module(module)
    print(json.dumps([module, sorted({name.split(".")[0] for name in sys.modules})]), flush=True)
"""


def test_each_replica_imports_only_the_libraries_it_runs() -> None:
    environment = os.environ | {"PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", REPORT, *MUST_NOT_IMPORT], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    reports = [json.loads(line) for line in run.stdout.splitlines()]
    assert [module for module, _ in reports] == list(MUST_NOT_IMPORT)
    for module, imported in reports:
        wrong = sorted(set(imported) & MUST_NOT_IMPORT[module])
        assert not wrong, f"{module} imports {wrong}"
