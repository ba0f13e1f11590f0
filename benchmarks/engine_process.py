"""One faster-whisper process of the throughput benchmark, on one CPU thread.

Loads the model, prints `ready`, waits for a line on stdin, then transcribes its files and
prints one JSON line: wall seconds (from the go line), each file's text, the first segment's
time of the first file, and the process's peak memory.

    python benchmarks/engine_process.py MODEL_DIR {sequential|batched} FILE...

`sequential`: `WhisperModel.transcribe`, one file after another (the engine as most people call
it: the baseline). `batched`: faster-whisper's `BatchedInferencePipeline`, one file after
another, each file's chunks in batches of 8.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"

import json
import resource
import sys
import time

from faster_whisper import BatchedInferencePipeline, WhisperModel


def main() -> None:
    model_dir, mode, *files = sys.argv[1:]
    model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=1)
    batched = BatchedInferencePipeline(model)
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    texts, first = {}, None
    for path in files:
        if mode == "sequential":
            segments, _ = model.transcribe(path, beam_size=5)
        else:
            segments, _ = batched.transcribe(path, beam_size=5, batch_size=8, without_timestamps=False)
        parts = []
        for segment in segments:
            first = first or time.perf_counter() - started
            parts.append(segment.text)
        texts[path] = "".join(parts)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "texts": texts, "first": first, "peak_bytes": peak}), flush=True)


if __name__ == "__main__":
    main()
