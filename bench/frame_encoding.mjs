// Browser-side half of bench/frame_encoding.py: what a page pays to decode one delta frame.
// A text frame reaches the page as a string (the browser decoded the UTF-8 natively), so JSON
// costs one JSON.parse; a binary frame arrives as an ArrayBuffer for a JavaScript MessagePack
// decoder (@msgpack/msgpack, the reference implementation; not a dependency of the project):
//   npm install --prefix /tmp/mpkjs @msgpack/msgpack
//   MSGPACK_JS=/tmp/mpkjs/node_modules node bench/frame_encoding.mjs
import { createRequire } from "node:module";

const WORDS = [" the", " stream", " token", " model", " answer", " sidecar", " latency", " cost",
  " is", " a", " of", " and", " to", " in", " that", " it", " for", " on", " with", " as"];
const NON_ASCII = [" café", " 東京", " naïve", " ß", " 🙂"];
const FRAMES = 20000;

const require = createRequire(`${process.env.MSGPACK_JS ?? "/nonexistent"}/`);
let msgpack;
try {
  msgpack = require("@msgpack/msgpack");
} catch {
  console.log("needs @msgpack/msgpack: npm install --prefix /tmp/mpkjs @msgpack/msgpack");
  process.exit(2);
}

const tokens = [...Array(9).fill(WORDS).flat(), ...NON_ASCII]; // as bench/frame_encoding.py
const frames = Array.from({ length: FRAMES }, (_, i) => ({
  type: "delta", id: "r12", seq: i + 1, text: tokens[((i + 1) * 7919) % tokens.length],
}));
const texts = frames.map((f) => JSON.stringify(f));
const utf8 = texts.map((t) => new TextEncoder().encode(t));
const textDecoder = new TextDecoder();
const maps = frames.map((f) => msgpack.encode(f));
const arrays = frames.map((f) => msgpack.encode([1, f.id, f.seq, f.text]));
const decoder = new msgpack.Decoder();

function timeOnce(work, items) {
  const start = process.hrtime.bigint();
  for (const item of items) work(item);
  return Number(process.hrtime.bigint() - start) / items.length;
}

const bytes = (list) => list.reduce((sum, x) => sum + (typeof x === "string"
  ? Buffer.byteLength(x) : x.byteLength), 0) / list.length;
const cases = [
  ["JSON text (JSON.parse)", texts, (t) => JSON.parse(t)],
  ["JSON bytes (TextDecoder+parse)", utf8, (b) => JSON.parse(textDecoder.decode(b))],
  ["MessagePack map (@msgpack/msgpack)", maps, (b) => decoder.decode(b)],
  ["MessagePack array (@msgpack/msgpack)", arrays, (b) => decoder.decode(b)],
];
const best = cases.map(() => Infinity);
for (let round = 0; round < 15; round += 1) { // interleaved: a shared machine is noisy
  cases.forEach(([, list, decode], i) => { best[i] = Math.min(best[i], timeOnce(decode, list)); });
}
console.log(`${FRAMES} delta frames, best of 15 rounds; node ${process.version}`);
console.log(`${"decoding".padEnd(36)} ${"bytes/frame".padStart(11)} ${"decode ns".padStart(10)}`);
cases.forEach(([name, list], i) => {
  console.log(`${name.padEnd(36)} ${bytes(list).toFixed(1).padStart(11)} ${best[i].toFixed(0).padStart(10)}`);
});
