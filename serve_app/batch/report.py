"""What a batch run did: the summary line, the progress bar, and `OUTPUT/failures.jsonl`."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FAILURES_FILE", "BatchSummary", "Failure", "Report", "progress_bar"]

FAILURES_FILE = "failures.jsonl"


@dataclass(frozen=True, slots=True)
class Failure:
    path: str
    reason: str

    def to_json(self) -> str:
        return json.dumps({"path": self.path, "reason": self.reason}, ensure_ascii=False)


@dataclass(slots=True)
class BatchSummary:
    files: int
    """Files the folder or manifest names."""
    transcribed: int = 0
    skipped: int = 0
    """Files an earlier run wrote every output of."""
    failures: list[Failure] = field(default_factory=list)
    audio_seconds: float = 0.0
    """Audio of the files this run transcribed."""
    wall_seconds: float = 0.0
    """From the pipeline's start (Ray's own start left out) to the last file's outputs."""

    @property
    def speed(self) -> float:
        """Audio seconds transcribed a wall-clock second."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.files} files: {self.transcribed} transcribed, {self.skipped} already done, "
            f"{len(self.failures)} failed; {self.audio_seconds / 3600:.3f} h of audio in {self.wall_seconds:.1f} s "
            f"({self.speed:.2f} audio s / wall s)"
        )


class Report:
    """What a run did, kept as it happens: the summary, and each failure appended at once to
    the failures file, so that a batch that breaks off still lists its failures so far."""

    def __init__(self, output: Path, files: int) -> None:
        self.summary = BatchSummary(files=files)
        self.failures_file = output / FAILURES_FILE
        self.failures_file.unlink(missing_ok=True)  # the last run's: its files are tried again

    def failed(self, path: Path, reason: str) -> None:
        failure = Failure(str(path), reason)
        self.summary.failures.append(failure)
        with open(self.failures_file, "a", encoding="utf-8") as failures:
            failures.write(failure.to_json() + "\n")

    def transcribed(self, audio_seconds: float) -> None:
        self.summary.transcribed += 1
        self.summary.audio_seconds += audio_seconds

    def progress(self) -> str:
        return f"{self.summary.audio_seconds / 3600:.3f} h audio, {len(self.summary.failures)} failed"


def progress_bar(files: int, *, enabled: bool) -> Any:
    """A bar of files on stderr (tqdm), its postfix the report's `progress()`."""
    from tqdm import tqdm

    return tqdm(total=files, unit="file", desc="transcribing", disable=not enabled, file=sys.stderr)
