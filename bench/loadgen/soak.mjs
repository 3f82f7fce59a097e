// The soak's load (bench/soak.py): STREAMS recording sessions at a time, each sending 20 ms frames
// at real time with echo on, closed after SESSION_SECONDS and followed at once by the next, for
// SECONDS in all. Every frame is unique (u32 LE stream, u32 LE frame number, a pattern), so an
// echo and a recording can be checked byte for byte.
//   node soak.mjs URL STREAMS SECONDS SESSION_SECONDS
//   → a JSON line every 10 s: {t, sent, acked, echoed, sessions, failed, ack_ms: [p50, p95, p99],
//     echo_ms: [...]} for that window; then one final line: {final: true, sessions: [{session_id,
//     stream, first, count, status, file_path}], sent, acked, echoed, bad, duplicated, reordered,
//     failed, first_error}
import WebSocket from "ws";

const [base, streamsArg, secondsArg, sessionArg] = process.argv.slice(2);
const streams = Number(streamsArg);
const seconds = Number(secondsArg);
const sessionSeconds = Number(sessionArg);
const url = `${base}/api/ws/audio?format=pcm&sample_rate=16000&echo=true&delay_ms=0`;
const CLOSE = JSON.stringify({ type: "control", action: "close_session" });
const WINDOW_MS = 10000;

function frameOf(index, n) {
  const frame = Buffer.allocUnsafe(640);
  frame.writeUInt32LE(index, 0);
  frame.writeUInt32LE(n, 4);
  for (let j = 8; j < 640; j++) frame[j] = (n + j) & 0xff;
  return frame;
}

// echo_missing: frames whose echo had not come when the session closed (the socket closes with it)
const total = { sent: 0, acked: 0, echoed: 0, echo_missing: 0, bad: 0, duplicated: 0, reordered: 0, failed: 0 };
let firstError = "";
const sessions = [];
let window = { sent: 0, acked: 0, echoed: 0, sessions: 0, failed: 0, ack: [], echo: [] };
const start = performance.now();

function quantiles(values) {
  if (values.length === 0) return [null, null, null];
  values.sort((a, b) => a - b);
  const at = (q) => Math.round(values[Math.floor(q * (values.length - 1))] * 1000) / 1000;
  return [at(0.5), at(0.95), at(0.99)];
}

const reporter = setInterval(() => {
  const { ack, echo, ...counts } = window;
  const t = Math.round((performance.now() - start) / 1000);
  process.stdout.write(JSON.stringify({ t, ...counts, ack_ms: quantiles(ack), echo_ms: quantiles(echo) }) + "\n");
  window = { sent: 0, acked: 0, echoed: 0, sessions: 0, failed: 0, ack: [], echo: [] };
}, WINDOW_MS);

function fail(message) {
  total.failed += 1;
  window.failed += 1;
  firstError ||= message;
}

// One session: frames from `first` on, until `until` (ms since start) or SESSION_SECONDS, then
// close_session and the server's answer. Resolves with the next frame number.
function session(index, first, until) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    const sentAt = [];
    const echoed = new Uint8Array(Math.ceil(sessionSeconds * 50) + 2);
    let acked = 0;
    let echoedCount = 0;
    let highest = -1;
    let begin = 0;
    let record = null;
    let closing = false;
    let ended = false;
    const end = (error) => {
      if (ended) return;
      ended = true;
      if (error) fail(`stream ${index}: ${error}`);
      if (record) sessions.push(record);
      total.echo_missing += sentAt.length - echoedCount;
      ws.terminate();
      resolve(first + sentAt.length);
    };
    ws.on("message", (data, isBinary) => {
      const now = performance.now();
      if (isBinary) {
        const n = data.length === 640 && data.readUInt32LE(0) === index ? data.readUInt32LE(4) - first : -1;
        if (n < 0 || n >= sentAt.length || !data.equals(frameOf(index, first + n))) {
          total.bad += 1;
          return;
        }
        if (echoed[n]) {
          total.duplicated += 1;
          return;
        }
        echoed[n] = 1;
        echoedCount += 1;
        if (n < highest) total.reordered += 1;
        else highest = n;
        total.echoed += 1;
        window.echoed += 1;
        window.echo.push(now - sentAt[n]);
        return;
      }
      const message = JSON.parse(data.toString());
      if (record === null) {
        record = { session_id: message.session_id, stream: index, first, count: 0, status: "active", file_path: null };
        begin = now;
        tick();
      } else if (message.message === "Chunk processed successfully") {
        window.ack.push(now - sentAt[acked]);
        acked += 1;
        record.count = acked;
        total.acked += 1;
        window.acked += 1;
      } else if (message.status === "completed" && closing) {
        record.status = "completed"; // the server closes the socket next
        record.file_path = message.file_path;
        window.sessions += 1;
        setTimeout(() => end("no close after the session closed"), 5000);
      } else {
        end(`unexpected ${data.toString().slice(0, 200)}`);
      }
    });
    ws.on("error", (error) => end(error.message));
    ws.on("close", (code) => end(record?.status === "completed" ? undefined : `closed early (${code})`));
    function tick() {
      if (ended) return;
      const elapsed = performance.now() - begin;
      if (elapsed >= sessionSeconds * 1000 || performance.now() - start >= until) {
        closing = true;
        ws.send(CLOSE);
        return;
      }
      sentAt.push(performance.now());
      ws.send(frameOf(index, first + sentAt.length - 1));
      total.sent += 1;
      window.sent += 1;
      setTimeout(tick, Math.max(0, begin + sentAt.length * 20 - performance.now()));
    }
  });
}

async function stream(index) {
  await new Promise((resolve) => setTimeout(resolve, (index * sessionSeconds * 1000) / streams));
  let next = 0;
  while (performance.now() - start < seconds * 1000) {
    next = await session(index, next, seconds * 1000);
  }
}

await Promise.all(Array.from({ length: streams }, (_, i) => stream(i)));
clearInterval(reporter);
const final = { final: true, sessions, ...total, first_error: firstError };
process.stdout.write(JSON.stringify(final) + "\n", () => process.exit(0));
