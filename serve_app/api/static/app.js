// The try-it page: live transcription over /v1/realtime, files through /v1/audio/diarize,
// and the model list. No dependencies; the key stays in this tab (sessionStorage).
const $ = (id) => document.getElementById(id);
const base = document.body.dataset.base || "";
const RATE = 24000;
const CHUNK = RATE / 10; // 100 ms a message

const status = (text, error = false) => { $("status").textContent = text; $("status").classList.toggle("error", error); };
const key = () => $("key").value.trim();
const headers = () => (key() ? { Authorization: `Bearer ${key()}` } : {});

$("key").value = sessionStorage.getItem("whisper-serve-key") || "";
$("key").addEventListener("change", () => { sessionStorage.setItem("whisper-serve-key", key()); loadModels(); });
$("settings").addEventListener("submit", (event) => event.preventDefault());

async function api(path, options = {}) {
  const response = await fetch(base + path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((body.error && body.error.message) || body.reason || `HTTP ${response.status}`);
  return body;
}

// -- models -------------------------------------------------------------------------------
async function loadModels() {
  try {
    const { models } = await api("/v1/models");
    const select = $("model"), chosen = select.value;
    select.replaceChildren(new Option("default (whisper-1)", "whisper-1"));
    const rows = [];
    for (const model of models) {
      if (model.kind === "transcription") select.add(new Option(model.id, model.id));
      const row = document.createElement("tr");
      for (const text of [model.id, model.kind, model.kind === "transcription" ? (model.multilingual ? "many" : "English") : "—"]) {
        row.insertCell().textContent = text;
      }
      rows.push(row);
    }
    select.value = [...select.options].some((o) => o.value === chosen) ? chosen : "whisper-1";
    $("models").tBodies[0].replaceChildren(...rows);
  } catch (error) {
    status(`Models: ${error.message}`, true);
  }
}
$("refresh").addEventListener("click", loadModels);

// -- live -----------------------------------------------------------------------------------
let live = null;

function toBase64(int16) {
  const bytes = new Uint8Array(int16.buffer);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function paragraph(itemId) {
  let p = document.querySelector(`#live p[data-item="${CSS.escape(itemId)}"]`);
  if (!p) {
    p = document.createElement("p");
    p.dataset.item = itemId;
    p.className = "partial";
    $("live").append(p);
  }
  return p;
}

function onEvent(event) {
  switch (event.type) {
    case "session.created": {
      const language = $("language").value.trim();
      const transcription = { model: $("model").value };
      if (language) transcription.language = language;
      live.socket.send(JSON.stringify({ type: "session.update", session: { type: "transcription", audio: { input: {
        format: { type: "audio/pcm", rate: RATE }, transcription,
        turn_detection: { type: "server_vad", threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 500 } } } } }));
      break;
    }
    case "session.updated": status("Listening…"); break;
    case "input_audio_buffer.speech_started": paragraph(event.item_id).textContent ||= "…"; break;
    case "conversation.item.input_audio_transcription.delta": {
      const p = paragraph(event.item_id);
      p.textContent = (p.textContent === "…" ? "" : p.textContent) + event.delta;
      break;
    }
    case "conversation.item.input_audio_transcription.completed": {
      const p = paragraph(event.item_id);
      p.textContent = event.transcript;
      p.className = "final";
      if (!event.transcript) p.remove();
      if (live && live.stopping) live.finish();
      break;
    }
    case "conversation.item.input_audio_transcription.failed":
      paragraph(event.item_id).textContent = `(failed: ${event.error.message})`;
      break;
    case "error":
      if (live && live.stopping && event.error.code === "input_audio_buffer_commit_empty") { live.finish(); break; }
      status(event.error.message, true);
      break;
  }
  $("live").scrollTop = $("live").scrollHeight;
}

async function start() {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true } });
  let context;
  try { context = new AudioContext({ sampleRate: RATE }); } catch { context = new AudioContext(); }
  await context.audioWorklet.addModule(`${base}/ui/pcm-worklet.js`);
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, "pcm-capture");
  source.connect(node);
  const url = new URL(`${base}/v1/realtime`, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("intent", "transcription");
  url.searchParams.set("model", $("model").value);
  const protocols = ["realtime"];
  if (key()) protocols.push(`openai-insecure-api-key.${key()}`);
  const socket = new WebSocket(url, protocols);
  const ratio = context.sampleRate / RATE;
  let pending = new Float32Array(0), position = 0;
  live = { socket, stream, context, stopping: false, finish() {
    clearTimeout(this.timer); socket.close(1000); stream.getTracks().forEach((t) => t.stop()); context.close(); live = null;
    $("record").textContent = "Start recording"; $("record").setAttribute("aria-pressed", "false"); status("Stopped.");
  } };
  node.port.onmessage = ({ data }) => {
    let peak = 0;
    for (const x of data) peak = Math.max(peak, Math.abs(x));
    $("level").firstElementChild.style.width = `${Math.min(100, peak * 140)}%`;
    // To 24 kHz (linear) where the browser would not open the context at that rate.
    let samples = data;
    if (ratio !== 1) {
      const out = [];
      for (; position < data.length; position += ratio) {
        const i = Math.floor(position), f = position - i;
        out.push(data[i] * (1 - f) + (data[i + 1] ?? data[i]) * f);
      }
      position -= data.length;
      samples = Float32Array.from(out);
    }
    const joined = new Float32Array(pending.length + samples.length);
    joined.set(pending); joined.set(samples, pending.length);
    let offset = 0;
    for (; offset + CHUNK <= joined.length; offset += CHUNK) {
      const pcm = new Int16Array(CHUNK);
      for (let i = 0; i < CHUNK; i++) pcm[i] = Math.max(-1, Math.min(1, joined[offset + i])) * 0x7fff;
      if (socket.readyState === WebSocket.OPEN && !live?.stopping) socket.send(JSON.stringify({ type: "input_audio_buffer.append", audio: toBase64(pcm) }));
    }
    pending = joined.slice(offset);
  };
  socket.onmessage = (message) => onEvent(JSON.parse(message.data));
  socket.onclose = (event) => {
    if (live && live.socket === socket) { const reason = event.reason; live.finish(); if (reason && event.code !== 1000) status(`Closed: ${reason}`, true); }
  };
  socket.onerror = () => status("The live session could not open (is the key right?)", true);
  $("record").textContent = "Stop";
  $("record").setAttribute("aria-pressed", "true");
  status("Connecting…");
}

function stop() {
  if (!live) return;
  live.stopping = true;
  status("Finishing the last words…");
  // What was said since the last pause is transcribed before the session closes.
  live.socket.send(JSON.stringify({ type: "input_audio_buffer.commit" }));
  live.timer = setTimeout(() => live && live.finish(), 8000);
}

$("record").addEventListener("click", () => {
  if (live) { stop(); return; }
  start().catch((error) => { status(`Microphone: ${error.message}`, true); live = null; });
});

// -- a file, with its speakers --------------------------------------------------------------
const COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f"];
const stamp = (s, sep) => {
  const ms = Math.round(s * 1000), h = Math.floor(ms / 3600000), m = Math.floor(ms / 60000) % 60, sec = Math.floor(ms / 1000) % 60;
  return `${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}:${String(sec).padStart(2, "0")}${sep}${String(ms % 1000).padStart(3, "0")}`;
};
const srt = (segments) => segments.map((s, i) => `${i + 1}\n${stamp(s.start, ",")} --> ${stamp(s.end, ",")}\n${s.speaker ? `[${s.speaker}] ` : ""}${s.text.trim()}\n`).join("\n");
const vtt = (segments) => "WEBVTT\n\n" + segments.map((s) => `${stamp(s.start, ".")} --> ${stamp(s.end, ".")}\n${s.speaker ? `<v ${s.speaker}>` : ""}${s.text.trim()}\n`).join("\n");
const link = (id, text, type) => { const a = $(id); URL.revokeObjectURL(a.href); a.href = URL.createObjectURL(new Blob([text], { type })); };

function draw(result) {
  const duration = result.duration || Math.max(0, ...result.segments.map((s) => s.end)) || 1;
  const speakers = [...new Set(result.segments.map((s) => s.speaker || "speech"))];
  const timeline = $("timeline");
  timeline.replaceChildren();
  for (const [index, who] of speakers.entries()) {
    const row = document.createElement("div");
    row.className = "row";
    const label = document.createElement("span");
    label.className = "who"; label.textContent = who;
    row.append(label);
    for (const s of result.segments.filter((s) => (s.speaker || "speech") === who)) {
      const turn = document.createElement("button");
      turn.type = "button"; turn.className = "turn";
      turn.style.left = `${(s.start / duration) * 100}%`;
      turn.style.width = `${((s.end - s.start) / duration) * 100}%`;
      turn.style.background = COLOURS[index % COLOURS.length];
      turn.title = `${who} ${s.start.toFixed(1)}–${s.end.toFixed(1)} s: ${s.text.trim()}`;
      turn.setAttribute("aria-label", turn.title);
      turn.addEventListener("click", () => { $("player").currentTime = s.start; $("player").play(); });
      row.append(turn);
    }
    timeline.append(row);
  }
  for (let i = 0; i <= 4; i++) {
    const tick = document.createElement("span");
    tick.className = "axis"; tick.style.left = `${i * 25}%`; tick.textContent = `${((duration * i) / 4).toFixed(0)} s`;
    timeline.append(tick);
  }
  const list = $("segments");
  list.replaceChildren(...result.segments.map((s) => {
    const item = document.createElement("li");
    const when = document.createElement("span"); when.className = "when"; when.textContent = stamp(s.start, ".").slice(3, 8);
    const who = document.createElement("span"); who.className = "who"; who.textContent = s.speaker || "";
    who.style.color = COLOURS[speakers.indexOf(s.speaker || "speech") % COLOURS.length];
    item.append(when, who, document.createTextNode(s.text.trim()));
    return item;
  }));
  link("srt", srt(result.segments), "application/x-subrip");
  link("vtt", vtt(result.segments), "text/vtt");
  $("result").hidden = false;
}

async function transcribeFile(file) {
  if (!file) return;
  status(`Transcribing ${file.name} with its speakers…`);
  $("player").src = URL.createObjectURL(file);
  const form = new FormData();
  form.append("file", file);
  form.append("model", $("model").value);
  form.append("response_format", "verbose_json");
  if ($("language").value.trim()) form.append("language", $("language").value.trim());
  try {
    const result = await api("/v1/audio/diarize", { method: "POST", body: form });
    draw(result);
    status(`${file.name}: ${result.segments.length} segments, ${new Set(result.segments.map((s) => s.speaker)).size} speakers.`);
  } catch (error) {
    status(`${file.name}: ${error.message}`, true);
  }
}

const drop = $("drop");
$("file").addEventListener("change", () => transcribeFile($("file").files[0]));
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => { event.preventDefault(); drop.classList.remove("over"); transcribeFile(event.dataTransfer.files[0]); });

loadModels();
