// The /test page's microphone tap (an AudioWorklet): the context's float samples, resampled to
// the stream's rate, cut into 20 ms frames of 16-bit PCM, each posted to the page with its RMS
// level. Browsers capture at 44.1 or 48 kHz, and Firefox will not connect a microphone to a
// context of another rate, so the worklet resamples: a moving average over the ratio's whole
// samples first (when going down by 2 or more, so what lies above the new Nyquist frequency is
// damped, not folded back), then linear interpolation.
class Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const rate = options.processorOptions.rate;
    this.step = sampleRate / rate; // input samples per output sample
    this.pos = 0; // next output sample's position in this block; -1 is the previous block's last
    this.prev = 0;
    this.taps = this.step >= 2 ? Math.floor(this.step) : 1;
    this.ring = new Float32Array(this.taps);
    this.head = 0;
    this.sum = 0;
    this.size = Math.round(rate / 50);
    this.frame = new Int16Array(this.size);
    this.filled = 0;
    this.squares = 0;
  }

  smooth(x) {
    if (this.taps === 1) return x;
    const y = new Float32Array(x.length);
    for (let i = 0; i < x.length; i += 1) {
      this.sum += x[i] - this.ring[this.head];
      this.ring[this.head] = x[i];
      this.head = (this.head + 1) % this.taps;
      y[i] = this.sum / this.taps;
    }
    return y;
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input || input.length < 2) return true;
    const x = this.smooth(input);
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
