// Many streams of 20 ms frames at real time, in one of two modes:
//   ack (bench/ingest_acks.py): for each frame, the time from send to its ack.
//     node loadgen.mjs URL STREAMS SECONDS  → one JSON line: {latencies_ms: [...], frames, missing}
//   echo (bench/echo_latency.py): every frame is unique (stream index, frame number, a pattern) and
//   should come back as it was, DELAY_MS after it was sent; for each, received − sent − DELAY_MS.
//     node loadgen.mjs URL STREAMS SECONDS --echo DELAY_MS
//     → one JSON line: {errors_ms: [...], sent, received, lost, reordered, duplicated, bad, failed, first_error}
import WebSocket from "ws";

const [url, streamsArg, secondsArg, modeArg, delayArg] = process.argv.slice(2);
const streams = Number(streamsArg);
const seconds = Number(secondsArg);
const frame = Buffer.alloc(640); // 20 ms of 16 kHz mono s16le
const latencies = [];
let missing = 0;

function stream(delayMs) {
  return new Promise((resolve, reject) => {
    setTimeout(() => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      const sent = [];
      let greeted = false;
      let n = 0;
      let begin = 0;
      let finished = false;
      const done = () => {
        ws.close();
        resolve();
      };
      ws.on("message", (data, isBinary) => {
        if (isBinary) return;
        if (!greeted) {
          greeted = true;
          begin = performance.now();
          tick();
          return;
        }
        latencies.push(performance.now() - sent.shift());
        if (finished && sent.length === 0) done();
      });
      ws.on("error", reject);
      ws.on("close", (code) => {
        if (!finished) reject(new Error(`closed early: ${code}`));
      });
      function tick() {
        if (performance.now() - begin >= seconds * 1000) {
          finished = true;
          if (sent.length === 0) done();
          setTimeout(() => {
            missing += sent.length;
            done();
          }, 30000);
          return;
        }
        n += 1;
        sent.push(performance.now());
        ws.send(frame);
        setTimeout(tick, Math.max(0, begin + n * 20 - performance.now()));
      }
    }, delayMs);
  });
}

// The frame bench/echo_latency.py's Python client sends too: u32 LE stream, u32 LE frame, a pattern.
function echoFrame(index, n) {
  const frame = Buffer.allocUnsafe(640);
  frame.writeUInt32LE(index, 0);
  frame.writeUInt32LE(n, 4);
  for (let j = 8; j < 640; j++) frame[j] = (n + j) & 0xff;
  return frame;
}

const echo = { errors_ms: [], sent: 0, received: 0, lost: 0, reordered: 0, duplicated: 0, bad: 0, failed: 0 };
let firstError = "";

// One stream in echo mode. Frames not back DELAY_MS + 5 s after the last one was sent are lost;
// a stream the server refuses or closes early counts as failed (its unanswered frames as lost).
function echoStream(index, startMs, delayMs) {
  return new Promise((resolve) => {
    setTimeout(() => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      const sentAt = [];
      const seen = new Uint8Array(Math.ceil(seconds * 50) + 1);
      let received = 0;
      let highest = -1;
      let begin = 0;
      let finished = false;
      let ended = false;
      const end = (error) => {
        if (ended) return;
        ended = true;
        if (error) {
          echo.failed += 1;
          firstError ||= error;
        }
        echo.sent += sentAt.length;
        echo.received += received;
        echo.lost += sentAt.length - received;
        ws.close();
        resolve();
      };
      ws.on("open", () => {
        begin = performance.now();
        tick();
      });
      ws.on("message", (data, isBinary) => {
        const now = performance.now();
        const n = isBinary && data.length === 640 && data.readUInt32LE(0) === index ? data.readUInt32LE(4) : -1;
        if (n < 0 || n >= sentAt.length || !data.equals(echoFrame(index, n))) {
          echo.bad += 1;
          return;
        }
        if (seen[n]) {
          echo.duplicated += 1;
          return;
        }
        seen[n] = 1;
        received += 1;
        if (n < highest) echo.reordered += 1;
        else highest = n;
        echo.errors_ms.push(Math.round((now - sentAt[n] - delayMs) * 1000) / 1000);
        if (finished && received === sentAt.length) end();
      });
      ws.on("error", (error) => end(`stream ${index}: ${error.message}`));
      ws.on("close", (code) => end(`stream ${index}: closed early (${code})`));
      function tick() {
        if (ended) return;
        if (performance.now() - begin >= seconds * 1000) {
          finished = true;
          if (received === sentAt.length) end();
          else setTimeout(() => end(), delayMs + 5000);
          return;
        }
        sentAt.push(performance.now());
        ws.send(echoFrame(index, sentAt.length - 1));
        setTimeout(tick, Math.max(0, begin + sentAt.length * 20 - performance.now()));
      }
    }, startMs);
  });
}

let result;
if (modeArg === "--echo") {
  const delayMs = Number(delayArg);
  await Promise.all(Array.from({ length: streams }, (_, i) => echoStream(i, (i * 1000) / streams, delayMs)));
  result = { ...echo, first_error: firstError };
} else {
  await Promise.all(Array.from({ length: streams }, (_, i) => stream((i * 1000) / streams)));
  result = { latencies_ms: latencies, frames: latencies.length, missing };
}
// exit only once the pipe took everything (a bare process.exit() cuts the output at 64 KiB)
process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(0));
