// The /test page's microphone tap (an AudioWorklet): the context's float samples, resampled to
// the stream's rate (linear interpolation), cut into 20 ms frames of 16-bit PCM, each posted to
// the page with its RMS level.
class Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const rate = options.processorOptions.rate;
    this.step = sampleRate / rate; // input samples per output sample
    this.pos = 0; // next output sample's position in this block; -1 is the previous block's last
    this.prev = 0;
    this.size = Math.round(rate / 50);
    this.frame = new Int16Array(this.size);
    this.filled = 0;
    this.squares = 0;
  }

  process(inputs) {
    const x = inputs[0] && inputs[0][0];
    if (!x || x.length < 2) return true;
    const last = x.length - 1;
    while (this.pos < last) {
      const i = Math.floor(this.pos);
      const a = i < 0 ? this.prev : x[i];
      const s = a + (x[i + 1] - a) * (this.pos - i);
      const clipped = Math.max(-1, Math.min(1, s));
      this.frame[this.filled++] = clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff;
      this.squares += clipped * clipped;
      if (this.filled === this.size) {
        const level = Math.sqrt(this.squares / this.filled);
        this.port.postMessage({ pcm: this.frame.buffer, level }, [this.frame.buffer]);
        this.frame = new Int16Array(this.size); // the old one went to the page
        this.filled = 0;
        this.squares = 0;
      }
      this.pos += this.step;
    }
    this.pos -= x.length;
    this.prev = x[last];
    return true;
  }
}

registerProcessor("voxbus-capture", Capture);
