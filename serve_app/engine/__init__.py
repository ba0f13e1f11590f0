"""faster-whisper: audio decoding, batched decoding and the cross-request batcher."""
