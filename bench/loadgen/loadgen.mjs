// Many streams of 20 ms frames at real time; for each frame, the time from send to its ack.
// Usage: node loadgen.mjs URL STREAMS SECONDS  → one JSON line: {latencies_ms: [...], frames, missing}
import WebSocket from "ws";

const [url, streamsArg, secondsArg] = process.argv.slice(2);
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

await Promise.all(Array.from({ length: streams }, (_, i) => stream((i * 1000) / streams)));
// exit only once the pipe took everything (a bare process.exit() cuts the output at 64 KiB)
process.stdout.write(JSON.stringify({ latencies_ms: latencies, frames: latencies.length, missing }) + "\n", () =>
  process.exit(0),
);
