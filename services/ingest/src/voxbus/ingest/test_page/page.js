// The /test page: the microphone to one of voxbus's WebSocket endpoints, with acks, echo
// playback, counters and the session's links. No build step, no dependencies.
//
// Each Start is a run (`state.run`): whatever a run awaits (the socket, the microphone, the
// worklet) is checked against it afterwards, so a socket the server closed, or a Stop, while a
// run was starting leaves no microphone on. Start stays disabled until the run is torn down.

const $ = (id) => document.getElementById(id);
const base = new URL(".", location.href); // where voxbus is served (the page is at <base>test)
const FRAME_MS = 20;
const LATENCY_WINDOW = 2000; // acks the p50/p95 are taken over (the latest)
const CLOSE_WAIT_MS = 35000; // CLOSE_TIMEOUT_SECONDS (30) and then some

const CLOSE_CODES = {
  1000: "closed normally",
  1001: "the server is going away",
  1005: "closed without a code",
  1006: "the connection was lost (no close frame)",
  1007: "the server could not read a message",
  1008: "refused: an invalid API key or parameter",
  1009: "a message was too large",
  1011: "the server hit an error (a recording client resumes the session; this page starts a new one)",
  1012: "the server is restarting (a recording client reconnects and resumes; this page starts a new one)",
  1013: "the server is busy: try again later",
  4001: "refused: invalid API key",
};

const state = {
  run: 0,
  stopping: false,
  ws: null,
  audio: null,
  mic: null,
  source: null,
  capture: null,
  mode: null,
  streamRate: null,
  onConfig: null,
  sessionId: null,
  sendTimes: [],
  latencies: [],
  playAt: 0,
  closing: null,
  counts: { sent: 0, acked: 0, bytes: 0, echoed: 0 },
};

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function log(text) {
  const line = `${new Date().toISOString().slice(11, 23)} ${text}\n`;
  $("log").textContent = line + $("log").textContent.slice(0, 20000);
}

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

function withToken(url) {
  const token = $("token").value.trim();
  if (token) url.searchParams.set("token", token);
  return url;
}

function socketUrl(path, params) {
  const url = new URL(path.replace(/^\//, ""), base);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  return withToken(url);
}

function apiUrl(path) {
  return withToken(new URL(path.replace(/^\//, ""), base));
}

// nearest rank: the smallest value with at least p % of the values at or below it
function percentile(values, p) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
}

function render() {
  const { sent, acked, bytes, echoed } = state.counts;
  $("sent").textContent = sent;
  $("acked").textContent = acked;
  $("bytes").textContent = bytes.toLocaleString("en");
  $("echoed").textContent = echoed.toLocaleString("en");
  for (const p of [50, 95]) {
    const value = percentile(state.latencies, p);
    $(`p${p}`).textContent = value === null ? "–" : `${value.toFixed(1)} ms`;
  }
}

function meter(id, level) {
  const db = level > 0 ? 20 * Math.log10(level) : -100;
  const percent = Math.max(0, Math.min(100, ((db + 60) / 60) * 100));
  $(id).style.width = `${percent}%`;
  $(id).dataset.level = level.toFixed(4);
}

function addLink(text, url, download) {
  const a = document.createElement("a");
  a.textContent = text;
  a.href = url.toString();
  if (download) a.download = download;
  a.target = "_blank";
  $("links").appendChild(a);
  return a;
}

function showSession(id) {
  state.sessionId = id;
  $("session").textContent = id;
  $("links").replaceChildren();
  addLink("Session info (JSON)", apiUrl(`api/audio/sessions/${id}`));
}

async function showRecording(run) {
  const id = state.sessionId;
  if (!id) {
    addLink("Recent sessions (JSON)", apiUrl("api/audio/sessions?limit=5"));
    return;
  }
  const deadline = performance.now() + CLOSE_WAIT_MS;
  while (performance.now() < deadline && state.run === run) {
    let info;
    try {
      const response = await fetch(apiUrl(`api/audio/sessions/${id}`));
      if (!response.ok) {
        log(`session info: HTTP ${response.status} ${await response.text()}`);
        return;
      }
      info = await response.json();
    } catch (error) {
      log(`session info: ${error.message}`);
      return;
    }
    if (info.status === "completed" || info.status === "error") {
      const seconds = info.duration_seconds.toFixed(2);
      const wav = addLink(`Recording (${seconds} s WAV)`, apiUrl(`api/audio/sessions/${id}/audio`), `${id}.wav`);
      wav.id = "download";
      info.segments.forEach((name, index) => {
        const url = apiUrl(`api/audio/sessions/${id}/segments/${index}`);
        addLink(`Segment ${index + 1}`, url, name.replace("/", "_")).className = "segment";
      });
      if (info.error) log(`session error: ${info.error}`);
      return;
    }
    await sleep(200);
  }
  log("the recording was not complete in 35 s: see the session info");
}

function play(buffer, rate) {
  const pcm = new Int16Array(buffer);
  if (!pcm.length || !state.audio) return;
  const samples = new Float32Array(pcm.length);
  let squares = 0;
  for (let i = 0; i < pcm.length; i += 1) {
    samples[i] = pcm[i] / 32768;
    squares += samples[i] * samples[i];
  }
  meter("echo-meter", Math.sqrt(squares / pcm.length));
  const audioBuffer = state.audio.createBuffer(1, samples.length, rate);
  audioBuffer.copyToChannel(samples, 0);
  const source = state.audio.createBufferSource();
  source.buffer = audioBuffer;
  source.connect(state.audio.destination);
  state.playAt = Math.max(state.playAt, state.audio.currentTime + 0.04);
  source.start(state.playAt);
  state.playAt += audioBuffer.duration;
}

function live(run) {
  return state.run === run && !state.stopping && state.ws?.readyState === WebSocket.OPEN;
}

async function startMic(rate, run) {
  const mic = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  if (!live(run)) {
    mic.getTracks().forEach((track) => track.stop());
    return;
  }
  state.mic = mic;
  await state.audio.audioWorklet.addModule(new URL("test/assets/capture.js", base));
  if (!live(run)) return stopMic();
  state.source = state.audio.createMediaStreamSource(mic);
  state.capture = new AudioWorkletNode(state.audio, "voxbus-capture", { processorOptions: { rate } });
  state.capture.port.onmessage = ({ data }) => {
    meter("input-meter", data.level);
    if (!live(run)) return;
    state.ws.send(data.pcm);
    state.counts.sent += 1;
    state.counts.bytes += data.pcm.byteLength;
    if (state.mode === "session") state.sendTimes.push(performance.now());
    render();
  };
  state.source.connect(state.capture);
  document.body.dataset.mic = "on";
  log(`microphone on: ${state.audio.sampleRate} Hz in, ${rate} Hz frames of ${FRAME_MS} ms out`);
}

function stopMic() {
  if (state.capture) {
    state.capture.port.onmessage = null;
    state.capture.port.close();
  }
  state.source?.disconnect();
  state.mic?.getTracks().forEach((track) => track.stop());
  state.capture = state.source = state.mic = null;
  document.body.dataset.mic = "off";
  meter("input-meter", 0);
}

// The run is over: microphone off, audio context closed, Start back.
function teardown() {
  stopMic();
  state.audio?.close();
  state.audio = null;
  state.ws = null;
  state.stopping = false;
  $("start").disabled = false;
  $("stop").disabled = true;
}

function onText(text) {
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    log(`server: ${text}`);
    return;
  }
  if (message.message === "Chunk processed successfully") {
    state.counts.acked += 1;
    const sentAt = state.sendTimes.shift();
    if (sentAt !== undefined) state.latencies.push(performance.now() - sentAt);
    if (state.latencies.length > LATENCY_WINDOW) state.latencies.shift();
    render();
    return;
  }
  log(`server: ${text}`);
  if (message.message === "Failed to process chunk") {
    state.sendTimes.shift(); // answered, not recorded: the next ack is the next chunk's
  } else if (message.message === "Audio session created" || message.message === "Audio session resumed") {
    showSession(message.session_id);
    setStatus("Streaming to a recording session");
  } else if (message.type === "session-started") {
    showSession(message.data.session_id);
    setStatus("Streaming (wearable session)");
  } else if (message.type === "config") {
    state.onConfig?.(message.data);
  } else if (
    message.message === "Session closed successfully" ||
    message.message === "Session failed" ||
    message.message === "Session close timed out" ||
    message.type === "session-stopped"
  ) {
    state.closing?.resolve();
  } else if (message.error || message.type === "error") {
    setStatus(`Error: ${message.error || message.data?.text}`, true);
  }
}

function connect(url, rate) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    state.ws = ws;
    ws.onopen = () => {
      log(`connected: ${url.pathname}`);
      resolve(ws);
    };
    ws.onmessage = ({ data }) => {
      if (state.ws !== ws) return;
      if (typeof data === "string") {
        onText(data);
      } else {
        state.counts.echoed += data.byteLength;
        play(data, state.streamRate || rate);
        render();
      }
    };
    ws.onclose = ({ code, reason }) => {
      const meaning = CLOSE_CODES[code] || "see the close codes in the API reference";
      const text = `Closed ${code}${reason ? ` "${reason}"` : ""}: ${meaning}`;
      log(text);
      reject(new Error(text));
      if (state.ws !== ws) return;
      setStatus(text, code !== 1000);
      state.closing?.resolve();
      if (!state.stopping) teardown();
    };
  });
}

// A browser with no audio device (a server, a container) keeps its AudioContext suspended:
// nothing is captured or played, which the page says rather than sit at zero
async function audioRunning(run) {
  await Promise.race([state.audio.resume(), sleep(2000)]);
  if (live(run) && state.audio.state !== "running") {
    const text = `The browser's audio is ${state.audio.state}: no audio device? Nothing is captured.`;
    log(text);
    setStatus(text, true);
  }
}

async function start() {
  const run = ++state.run;
  const mode = $("endpoint").value;
  let rate = Number($("rate").value);
  const delay = Math.min(60000, Math.max(0, Math.round(Number($("delay").value) || 0)));
  Object.assign(state, {
    mode,
    stopping: false,
    sessionId: null,
    sendTimes: [],
    latencies: [],
    closing: null,
    onConfig: null,
    streamRate: null,
    counts: { sent: 0, acked: 0, bytes: 0, echoed: 0 },
  });
  $("session").textContent = "–";
  $("links").replaceChildren();
  meter("echo-meter", 0);
  render();
  $("start").disabled = true;
  $("stop").disabled = false;
  setStatus("Connecting…");
  try {
    state.audio = new AudioContext();
    state.playAt = 0;
    if (mode === "session") {
      const echo = $("echo").checked;
      const params = { format: "pcm", sample_rate: rate, channels: 1, echo, delay_ms: delay };
      await connect(socketUrl("/api/ws/audio", params), rate);
    } else if (mode === "echo") {
      await connect(socketUrl("/ws/audio", { sample_rate: rate, delay_ms: delay }), rate);
      setStatus("Streaming (echo)");
    } else if (mode === "delayed") {
      const config = new Promise((resolve) => (state.onConfig = resolve));
      await connect(socketUrl("/ws/echo", {}), rate);
      const format = await Promise.race([config, sleep(10000)]);
      if (!format) throw new Error("no config message from /ws/echo");
      rate = state.streamRate = format.sample_rate;
      setStatus(`Streaming (delayed echo at ${rate} Hz)`);
    } else {
      await connect(socketUrl("/ws", { codec: "pcm", sample_rate: rate }), rate);
      const start = { type: "audio-start", data: { rate, width: 2, channels: 1, format: "pcm" } };
      state.ws.send(JSON.stringify(start));
    }
    if (live(run)) await startMic(rate, run);
    if (live(run) && state.audio.state !== "running") await audioRunning(run);
  } catch (error) {
    if (state.run !== run) return; // a Stop ended this run
    log(`could not start: ${error.message}`);
    setStatus(`Could not start: ${error.message}`, true);
    state.ws?.close(1000, "client gave up");
    teardown();
  }
}

async function stop() {
  const run = state.run;
  const ws = state.ws;
  $("stop").disabled = true; // Start stays disabled until the run is torn down
  state.stopping = true;
  stopMic();
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    state.run += 1; // a run still connecting gives up
    ws?.close(1000, "client stopped");
    setStatus("Stopped");
    return teardown();
  }
  setStatus("Closing: waiting for the recording…");
  const closed = new Promise((resolve) => (state.closing = { resolve }));
  if (state.mode === "session") {
    ws.send(JSON.stringify({ type: "control", action: "close_session" }));
  } else if (state.mode === "wearable") {
    ws.send(JSON.stringify({ type: "audio-stop" }));
  } else {
    ws.close(1000, "client stopped");
  }
  if ((await Promise.race([closed.then(() => true), sleep(CLOSE_WAIT_MS)])) !== true) {
    log("no answer to the close in 35 s");
  }
  if (ws.readyState === WebSocket.OPEN) ws.close(1000, "client stopped");
  await showRecording(run);
  setStatus(`Stopped: ${state.counts.sent} chunks sent, ${state.counts.acked} acked`);
  teardown();
}

// Seed 2's button: a short tone to /ws/audio, and what came back
function probe() {
  const rate = 16000;
  const frame = rate / 50;
  const ws = new WebSocket(socketUrl("/ws/audio", { sample_rate: rate }));
  ws.binaryType = "arraybuffer";
  let received = 0;
  let first = null;
  const sentAt = performance.now();
  ws.onopen = () => {
    for (let n = 0; n < 10; n += 1) {
      const pcm = new Int16Array(frame);
      for (let i = 0; i < frame; i += 1) pcm[i] = 8000 * Math.sin((2 * Math.PI * 440 * (n * frame + i)) / rate);
      ws.send(pcm.buffer);
    }
    log(`Test Audio WebSocket: sent ${10 * frame * 2} bytes to /ws/audio`);
    setTimeout(() => ws.close(1000, "test done"), 1500);
  };
  ws.onmessage = ({ data }) => {
    if (typeof data === "string") return log(`Test Audio WebSocket: server says ${data}`);
    first ??= performance.now() - sentAt;
    received += data.byteLength;
  };
  ws.onclose = ({ code, reason }) => {
    const meaning = CLOSE_CODES[code] || "see the close codes in the API reference";
    const echo = first === null ? "no echo" : `first echo after ${first.toFixed(0)} ms`;
    log(`Test Audio WebSocket: received ${received} bytes back, ${echo}; closed ${code} ${reason || ""} (${meaning})`);
  };
}

$("settings").addEventListener("submit", (event) => event.preventDefault());
$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);
$("probe").addEventListener("click", probe);
document.body.dataset.mic = "off";
render();
