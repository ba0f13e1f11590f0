"""Decoding media of any container to 16 kHz mono, and refusing what is not media."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import av
import httpx
import hypothesis
import numpy as np
import pytest
from fakes import FakeHandle, InProcess
from hypothesis import strategies as st
from media import SAMPLE_WAV, claim_duration, flac_bomb, transcode

from serve_app import pipeline
from serve_app.engine import lengths
from serve_app.engine.audio import MEDIA_DEMUXERS, SAMPLE_RATE, decode_audio, open_media
from serve_app.errors import BadRequest, PayloadTooLarge, UnsupportedMedia
from serve_app.options import DecodeOptions

REFUSED_FORMAT = "file is not audio or video in a format this service reads"
_W64 = b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00"


@pytest.mark.parametrize(
    ("suffix", "codec", "rate", "video"),
    [
        (".mp3", "mp3", 16000, False),
        (".ogg", "libopus", 48000, False),
        (".flac", "flac", 16000, False),
        (".m4a", "aac", 44100, False),
        (".mp4", "aac", 16000, True),
        (".mkv", "libopus", 48000, True),
        (".webm", "libopus", 48000, False),
        (".3gp", "aac", 16000, False),
        (".avi", "pcm_s16le", 16000, True),
        (".ts", "mp2", 48000, True),
        (".rm", "ac3", 48000, False),
        (".wv", "wavpack", 16000, False),
        (".aif", "pcm_s16be", 16000, False),
        (".caf", "pcm_s16le", 16000, False),
    ],
)
def test_every_container_decodes_to_the_same_audio(tmp_path: Path, suffix: str, codec: str, rate: int, video: bool) -> None:
    reference = decode_audio(open(SAMPLE_WAV, "rb"))
    encoded = transcode(SAMPLE_WAV, tmp_path / f"sample{suffix}", codec=codec, rate=rate, video=video)
    audio = decode_audio(open(encoded, "rb"))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - len(reference)) < 0.05 * SAMPLE_RATE
    # Lossy codecs change samples, not loudness: the energy stays close.
    assert np.sqrt(np.mean(audio**2)) == pytest.approx(np.sqrt(np.mean(reference**2)), rel=0.15)


def test_a_file_cut_short_is_refused(tmp_path: Path) -> None:
    mp3 = transcode(SAMPLE_WAV, tmp_path / "sample.mp3", codec="mp3").read_bytes()
    with pytest.raises(BadRequest, match="cut short: its header declares 30.0 s"):
        decode_audio(io.BytesIO(mp3[: len(mp3) // 2]))


def wav_holding(seconds: float) -> bytes:
    """The sample's WAV, its header unchanged (30 s), holding only the first `seconds` of data."""
    wav = SAMPLE_WAV.read_bytes()
    data = wav.index(b"data") + 8
    return wav[: data + int(seconds * SAMPLE_RATE) * 2]


def test_a_wav_holding_less_than_its_header_declares_is_refused() -> None:
    # FFmpeg takes a WAV's length from the bytes there are: its data chunk's size tells.
    with pytest.raises(BadRequest, match=r"^the file is cut short: its header declares 30.0 s of audio but only 1.5 s decode"):
        decode_audio(io.BytesIO(wav_holding(1.5)))
    assert len(decode_audio(io.BytesIO(wav_holding(29.5)))) == 29.5 * SAMPLE_RATE  # under a second short: whole enough


@pytest.mark.parametrize("unset", [0xFFFFFFFF, 0x7FFFFFFF, 0], ids=["ffmpeg", "arecord", "zero"])
def test_a_streamed_wav_whose_sizes_are_unset_decodes_whole(unset: int) -> None:
    """Writers to a pipe cannot go back to write the sizes; what they leave declares nothing."""
    wav = bytearray(SAMPLE_WAV.read_bytes())
    data = wav.index(b"data")
    struct.pack_into("<I", wav, 4, unset)
    struct.pack_into("<I", wav, data + 4, unset)
    assert len(decode_audio(io.BytesIO(bytes(wav)))) == 30 * SAMPLE_RATE


@pytest.mark.parametrize(
    ("suffix", "codec", "rate", "video"),
    [
        (".wav", "pcm_s16le", 16000, False),
        (".mp3", "mp3", 16000, False),
        (".flac", "flac", 16000, False),
        (".ogg", "libopus", 48000, False),
        (".oga", "flac", 16000, False),  # FLAC in Ogg
        (".m4a", "aac", 44100, False),
        (".mp4", "aac", 16000, True),
        (".3gp", "aac", 16000, False),
        (".webm", "libopus", 48000, False),
        (".mkv", "libopus", 48000, True),
        (".avi", "pcm_s16le", 16000, True),
        (".caf", "pcm_s16le", 16000, False),
        (".w64", "pcm_s16le", 16000, False),
        (".aif", "pcm_s16be", 16000, False),
        (".wv", "wavpack", 16000, False),
        (".flv", "aac", 16000, False),
    ],
)
def test_every_container_cut_at_half_is_refused(tmp_path: Path, suffix: str, codec: str, rate: int, video: bool) -> None:
    whole = transcode(SAMPLE_WAV, tmp_path / f"sample{suffix}", codec=codec, rate=rate, video=video).read_bytes()
    assert abs(len(decode_audio(io.BytesIO(whole))) - 30 * SAMPLE_RATE) < 0.1 * SAMPLE_RATE
    with pytest.raises(BadRequest, match=r"^the file is cut short: .*; send the whole file$"):
        decode_audio(io.BytesIO(whole[: len(whole) // 2]))


def test_an_mp4_cut_before_its_index_is_cut_short_not_unreadable(tmp_path: Path) -> None:
    """PyAV writes the index (moov) last: FFmpeg cannot open the first half at all."""
    whole = transcode(SAMPLE_WAV, tmp_path / "sample.m4a", codec="aac").read_bytes()
    assert whole.index(b"moov") > len(whole) // 2
    with pytest.raises(BadRequest, match=r"the file is cut short: its boxes declare [\d,]+ bytes but it holds [\d,]+"):
        decode_audio(io.BytesIO(whole[: len(whole) // 2]))


def test_an_adts_aac_file_is_not_taken_for_one_cut_short(tmp_path: Path) -> None:
    """A bare AAC stream declares no length: FFmpeg's guess from the bit rate (34.5 s for these
    30 s) is not held against it."""
    whole = transcode(SAMPLE_WAV, tmp_path / "sample.aac", codec="aac").read_bytes()
    assert abs(len(decode_audio(io.BytesIO(whole))) - 30 * SAMPLE_RATE) < 0.2 * SAMPLE_RATE
    with open_media(io.BytesIO(whole)) as container:
        guessed = container.duration / av.time_base
    assert guessed > 31, "FFmpeg now guesses this stream's length right: the test shows nothing"


def mp3_at(bit_rate: int) -> bytes:
    """The sample as a constant-bit-rate MP3, without its ID3 tag, its Info header made an
    ordinary frame: nothing in it counts its frames."""
    out_file = io.BytesIO()
    with av.open(out_file, "w", format="mp3") as out, open(SAMPLE_WAV, "rb") as media, open_media(media) as source:
        stream = out.add_stream("mp3", rate=16000)
        stream.layout, stream.bit_rate = "mono", bit_rate
        resampler = av.AudioResampler(format=stream.codec_context.codec.audio_formats[0].name, layout="mono", rate=16000)
        for frame in source.decode(audio=0):
            for converted in resampler.resample(frame):
                out.mux(stream.encode(converted))
        out.mux(stream.encode(None))
    mp3 = out_file.getvalue()
    if mp3[:3] == b"ID3":
        mp3 = mp3[10 + (mp3[6] << 21 | mp3[7] << 14 | mp3[8] << 7 | mp3[9]) :]
    return mp3.replace(b"Info", b"None", 1).replace(b"Xing", b"None", 1)


def test_an_mp3_of_variable_bit_rate_without_a_frame_count_is_not_taken_for_one_cut_short() -> None:
    """Without a Xing, Info or VBRI header an MP3's length is FFmpeg's guess from its first
    frame's bit rate: 8 kb/s here, then 64 kb/s, and the guess is four minutes for one."""
    mp3 = mp3_at(8_000) + mp3_at(64_000)
    with open_media(io.BytesIO(mp3)) as container:
        assert container.duration / av.time_base > 120, "FFmpeg no longer guesses from the first frame"
    assert abs(len(decode_audio(io.BytesIO(mp3))) - 60 * SAMPLE_RATE) < 0.5 * SAMPLE_RATE


def test_a_cut_short_upload_answers_400(tmp_path: Path) -> None:
    """Through the HTTP app in-process: the reason goes back to the client."""

    async def post() -> httpx.Response:
        async with InProcess(tmp_path).client() as http:
            return await http.post(
                "/v1/audio/transcriptions", files={"file": ("call.wav", wav_holding(1.5))}, data={"model": "tiny.en"}
            )

    response = asyncio.run(post())
    assert response.status_code == 400, response.text
    assert "the file is cut short: its header declares 30.0 s of audio but only 1.5 s decode" in response.json()["reason"]


@hypothesis.settings(max_examples=300, deadline=None, database=None)
@hypothesis.given(
    magic=st.sampled_from([b"RIFF", b"RF64", b"caff", b"OggS", b"ID3\x04", b"\x00\x00\x00\x20ftyp", _W64]),
    form=st.sampled_from([b"", b"WAVE", b"AVI "]),
    rest=st.binary(max_size=300),
)
def test_reading_the_sizes_of_any_bytes_neither_fails_nor_moves_the_file(magic: bytes, form: bytes, rest: bytes) -> None:
    data = magic + (rest[:4] + form if len(magic) == 4 else b"") + rest[4:]
    source = io.BytesIO(b"junk" + data)
    source.seek(4)
    declared = lengths.declared_by_sizes(source)
    assert declared is None or declared.present >= 0
    assert isinstance(lengths.ogg_is_finished(source), bool) and isinstance(lengths.mp3_counts_frames(source), bool)
    assert source.tell() == 4


def test_media_over_the_duration_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PayloadTooLarge, match="declares 0.5 minutes of audio, over the limit of 0.25 minutes"):
        decode_audio(open(SAMPLE_WAV, "rb"), max_seconds=15)
    assert len(decode_audio(open(SAMPLE_WAV, "rb"), max_seconds=60)) == 30 * SAMPLE_RATE


def test_a_header_claiming_hours_is_refused(tmp_path: Path) -> None:
    mp3 = transcode(SAMPLE_WAV, tmp_path / "sample.mp3", codec="mp3").read_bytes()
    claiming = claim_duration(mp3, hours=10)
    with pytest.raises(PayloadTooLarge, match="declares 600.0 minutes"):
        decode_audio(io.BytesIO(claiming), max_seconds=4 * 3600)
    with pytest.raises(BadRequest, match="cut short"):  # under the limit, the lie shows in what decodes
        decode_audio(io.BytesIO(claiming), max_seconds=24 * 3600)


@pytest.mark.parametrize(
    ("data", "error", "reason"),
    [
        (b"", BadRequest, "file is empty"),
        (b"PK\x03\x04" + bytes(range(256)) * 20, UnsupportedMedia, "not audio or video"),
        (b"RIFF\xff\xff\xff\x7fWAVEfmt " + b"\x00" * 64, UnsupportedMedia, ""),
    ],
)
def test_what_is_not_media_is_refused(data: bytes, error: type, reason: str) -> None:
    with pytest.raises(error) as refused:
        decode_audio(io.BytesIO(data))
    assert reason in refused.value.reason


def concat_decoding(lines: str, tmp_path: Path) -> tuple[str, str]:
    """The reasons of an ffconcat list naming `lines`, uploaded (bytes, names relative to the
    working folder) and read from a folder (names relative to the list, as for a job)."""
    body = f"ffconcat version 1.0\n{lines}".encode()
    with pytest.raises(UnsupportedMedia) as uploaded:
        decode_audio(io.BytesIO(body))
    (tmp_path / "call.ffconcat").write_bytes(body)
    with pytest.raises(UnsupportedMedia) as from_folder, open(tmp_path / "call.ffconcat", "rb") as listing:
        decode_audio(listing)
    return uploaded.value.reason, from_folder.value.reason


def test_a_concat_list_reads_no_file_and_tells_nothing_of_which_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copy(SAMPLE_WAV, tmp_path / "secret.wav")
    os.mkfifo(tmp_path / "pipe.wav")
    # Held open read-write with a byte in it: a reader's open does not block, and a read takes the byte.
    pipe = os.open(tmp_path / "pipe.wav", os.O_RDWR | os.O_NONBLOCK)
    os.write(pipe, b"x")
    try:
        reasons = {
            name: concat_decoding(f"file {name}\n", tmp_path)
            for name in ("secret.wav", "missing.wav", "pipe.wav", "/etc/passwd", "../secret.wav")
        }
        assert os.read(pipe, 1) == b"x", "a file the list names was read"
    finally:
        os.close(pipe)
    assert {reason for pair in reasons.values() for reason in pair} == {reasons["missing.wav"][0]}
    assert reasons["missing.wav"][0].startswith(REFUSED_FORMAT) and "concat lists" in reasons["missing.wav"][0]


def test_a_playlist_is_refused_and_tells_nothing_of_which_segments_exist(tmp_path: Path) -> None:
    transcode(SAMPLE_WAV, tmp_path / "part.aac", codec="aac")
    reasons = set()
    for segment in ("part.aac", "missing.aac"):
        playlist = tmp_path / f"{segment}.m3u8"
        playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:30\n#EXTINF:30,\n{segment}\n#EXT-X-ENDLIST\n")
        with open(playlist, "rb") as source, pytest.raises(UnsupportedMedia) as refused:
            decode_audio(source)
        reasons.add(refused.value.reason)
    assert reasons == {refused.value.reason} and refused.value.reason.startswith(REFUSED_FORMAT)
    with pytest.raises(UnsupportedMedia, match="file is not audio or video"):  # uploaded: FFmpeg needs the .m3u8 name
        decode_audio(io.BytesIO(playlist.read_bytes()))


def png(path: Path) -> Path:
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 8, 8, "rgb24"
        out.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((8, 8, 3), np.uint8), format="rgb24")))
        out.mux(stream.encode(None))
    return path


def test_images_and_image_sequences_are_refused_as_formats(tmp_path: Path) -> None:
    for number in (1, 2, 3):
        png(tmp_path / f"frame{number:03d}.png")
    shutil.copy(tmp_path / "frame001.png", tmp_path / "frame%03d.png")  # a job's path that is a pattern
    for name in ("frame%03d.png", "frame001.png"):
        with open(tmp_path / name, "rb") as image, pytest.raises(UnsupportedMedia, match=REFUSED_FORMAT):
            decode_audio(image)


def test_subtitles_are_refused_as_a_format() -> None:
    srt = b"1\n00:00:01,000 --> 00:00:02,000\nHello\n\n2\n00:00:03,000 --> 00:00:04,000\nWorld\n"
    with pytest.raises(UnsupportedMedia, match=REFUSED_FORMAT):
        decode_audio(io.BytesIO(srt))


@pytest.mark.parametrize("name", MEDIA_DEMUXERS)
def test_every_allowed_demuxer_is_one_ffmpeg_has(name: str) -> None:
    assert av.ContainerFormat(name).is_input  # ValueError for a name FFmpeg does not know


def old_decode(path: Path) -> np.ndarray:
    """decode_audio before its samples went into one buffer: a list of frames, concatenated."""
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks = [r.to_ndarray().reshape(-1) for f in container.decode(audio=0) for r in resampler.resample(f)]
        chunks += [r.to_ndarray().reshape(-1) for r in resampler.resample(None)]
    return np.concatenate(chunks)


@pytest.mark.parametrize(("suffix", "codec"), [(".wav", None), (".mp3", "mp3"), (".m4a", "aac"), (".ogg", "libopus")])
def test_real_audio_decodes_to_the_same_samples_as_before(tmp_path: Path, suffix: str, codec: str | None) -> None:
    path = SAMPLE_WAV if codec is None else transcode(SAMPLE_WAV, tmp_path / f"sample{suffix}", codec=codec)
    with open(path, "rb") as media:
        audio = decode_audio(media)
    assert audio.dtype == np.float32 and audio.flags.owndata
    np.testing.assert_array_equal(audio, old_decode(path))


def test_a_flac_that_hides_its_length_is_refused_once_the_limit_decodes() -> None:
    with pytest.raises(PayloadTooLarge, match="holds more than 1.0 minutes of audio, over the limit of 1 minutes"):
        decode_audio(io.BytesIO(flac_bomb(30)), max_seconds=60)
    assert len(decode_audio(io.BytesIO(flac_bomb(1.5)), max_seconds=120)) == 90 * SAMPLE_RATE


MEASURE = """
import json, os, sys
from serve_app.engine.audio import decode_audio
from serve_app.errors import PayloadTooLarge

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def peak():
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM"))

path, max_seconds = sys.argv[1], float(sys.argv[2]) or None
try:
    decode_audio(open(path, "rb"), max_seconds=1)  # loads what decoding loads once
except PayloadTooLarge:
    pass
before = rss()
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # the peak (VmHWM) starts again from here
try:
    audio = decode_audio(open(path, "rb"), max_seconds=max_seconds)
    outcome = audio.size
    del audio
except PayloadTooLarge:
    outcome = 413
print(json.dumps({"before": before, "peak": peak() - before, "after": rss() - before, "outcome": outcome}))
"""


def decoding_memory(path: Path, max_seconds: float | None) -> dict:
    """Peak and remaining resident bytes of decoding `path`, in a process of its own."""
    root = Path(__file__).parents[1]
    env = os.environ | {"PYTHONPATH": str(root)}
    run = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path), str(max_seconds or 0)], capture_output=True, text=True, env=env, cwd=root
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="measures memory through Linux's /proc")
def test_decoding_holds_the_audio_once_and_gives_the_memory_back(tmp_path: Path) -> None:
    limit_s, MiB = 20 * 60, 2**20
    limit_bytes = limit_s * SAMPLE_RATE * 4  # 73 MiB of float32
    bomb = tmp_path / "bomb.flac"
    bomb.write_bytes(flac_bomb(60))
    refused = decoding_memory(bomb, limit_s)
    twenty = tmp_path / "twenty.flac"
    twenty.write_bytes(flac_bomb(20))
    decoded = decoding_memory(twenty, None)
    print(
        f"\nbomb: peak +{refused['peak'] / MiB:.0f} MiB, after +{refused['after'] / MiB:.0f} MiB; "
        f"20 min: peak +{decoded['peak'] / MiB:.0f} MiB, after +{decoded['after'] / MiB:.0f} MiB; limit {limit_bytes / MiB:.0f} MiB"
    )
    assert refused["outcome"] == 413 and decoded["outcome"] == limit_s * SAMPLE_RATE
    # The peak: the buffer of the samples (and a last growth step of 8 MiB at most), not twice that.
    assert refused["peak"] < limit_bytes + 16 * MiB, "decoding held more than the limit's worth of audio"
    assert decoded["peak"] < limit_bytes + 16 * MiB, "decoding held more than the audio once"
    assert refused["after"] < 16 * MiB and decoded["after"] < 16 * MiB, "the decoded audio's memory stayed"


def test_uploads_decode_on_threads_of_their_own_and_the_event_loop_stays_free(monkeypatch: pytest.MonkeyPatch) -> None:
    running, most, lock = 0, 0, threading.Lock()

    def counted(*args, **kwargs) -> np.ndarray:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            return decode_audio(*args, **kwargs)
        finally:
            with lock:
                running -= 1

    class Store:
        def checkout(self, name: str, lease_s: float) -> tuple[SimpleNamespace, str]:
            return SimpleNamespace(id=name, kind="transcription", multilingual=True), "lease"

        def release(self, lease: str) -> None:
            pass

    monkeypatch.setattr(pipeline, "decode_audio", counted)
    bomb = flac_bomb(30)
    decoding = pipeline.Pipeline(model_store=FakeHandle(Store()), transcriber=None, max_audio_seconds=20 * 60, decode_threads=2)

    async def eight_bombs() -> tuple[list, list[float]]:
        waits: list[float] = []

        async def ping() -> None:  # as the readiness checks do: a thread of the loop's default pool
            while True:
                started = time.perf_counter()
                await asyncio.to_thread(lambda: None)
                waits.append(time.perf_counter() - started)
                await asyncio.sleep(0.01)

        pinging = asyncio.create_task(ping())
        uploads = (decoding.prepare(io.BytesIO(bomb), "tiny.en", DecodeOptions()) for _ in range(8))
        results = await asyncio.gather(*uploads, return_exceptions=True)
        pinging.cancel()
        return results, waits

    results, waits = asyncio.run(eight_bombs())
    print(f"\n8 bombs on 2 decoding threads: the slowest of {len(waits)} pings took {max(waits) * 1000:.0f} ms")
    assert all(isinstance(result, PayloadTooLarge) for result in results), results
    assert most == 2
    assert max(waits) < 3.0  # liveness: on the default pool, a ping waited behind every bomb (about 9 s)
