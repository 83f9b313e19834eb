/** GPT-2's byte-level BPE tokenizer, read from vocab.json + merges.txt in a checkpoint folder.
 *
 *  It gives the ids OpenAI's encoder.py (and Hugging Face's slow GPT2Tokenizer) give:
 *  1. the text is split into pieces by GPT-2's pattern (contractions, letter runs, digit runs,
 *     other-symbol runs, each with at most one leading space; whitespace runs);
 *  2. each piece is UTF-8 encoded and every byte becomes one printable character
 *     (`bytes_to_unicode`: a space is "Ġ", a newline "Ċ");
 *  3. merges apply to the piece's characters: the adjacent pair with the lowest rank (line in
 *     merges.txt) is merged everywhere, left to right, then the next lowest, until no pair has a
 *     rank;
 *  4. each resulting token is looked up in vocab.json.
 *  Decoding maps ids back to bytes and decodes UTF-8, each invalid sequence becoming U+FFFD
 *  (Python's errors="replace").
 *
 *  Points where kiln is stricter than Python, which would silently accept the file or crash later:
 *  vocab.json must be an object of distinct non-negative integer ids without repeated keys;
 *  merges.txt must start with its "#version" header and hold two tokens on every other line; text
 *  to encode must not hold a lone UTF-16 surrogate (UTF-8 cannot encode it). "<|endoftext|>" in
 *  the text is plain text, as in encoder.py: it is not turned into the special token. */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fail } from "../compiler/errors.ts";
import { parseStrictJson } from "./strict-json.ts";

export interface Tokenizer {
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

/** encoder.py's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves; the other 68
 *  bytes (controls, space, DEL, NBSP, soft hyphen) take U+0100.. in byte order. */
const BYTE_TO_CHAR: readonly string[] = (() => {
  const out: string[] = new Array<string>(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable =
      (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    out[b] = String.fromCharCode(printable ? b : 256 + n++);
  }
  return out;
})();

const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

/** GPT-2's pre-tokenization pattern. Python's `regex` module reads `\s` as the Unicode property
 *  White_Space, which JavaScript's `\s` is not (JS adds U+FEFF and drops U+0085), hence the
 *  spelled-out property. */
const PIECE =
  /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** The pieces GPT-2's pattern splits `text` into (before byte mapping and merges). Every
 *  character of the text lands in exactly one piece, in order. */
export function preTokenize(text: string): string[] {
  return Array.from(text.matchAll(PIECE), (m) => m[0]);
}

/** A candidate merge of node `left` with the node after it, pushed when the two became adjacent. */
interface PairEntry {
  readonly rank: number;
  readonly left: number;
  readonly right: number;
  readonly a: string;
  readonly b: string;
}

/** A binary min-heap of pairs by (rank, position). */
class PairHeap {
  private readonly items: PairEntry[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): PairEntry {
    return this.items[0];
  }

  private static less(x: PairEntry, y: PairEntry): boolean {
    return x.rank < y.rank || (x.rank === y.rank && x.left < y.left);
  }

  push(e: PairEntry): void {
    const h = this.items;
    let i = h.length;
    h.push(e);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!PairHeap.less(h[i], h[p])) break;
      [h[i], h[p]] = [h[p], h[i]];
      i = p;
    }
  }

  pop(): PairEntry {
    const h = this.items;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && PairHeap.less(h[l], h[m])) m = l;
        if (r < h.length && PairHeap.less(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }
}

/** encoder.py's `bpe` on one piece's symbols, in O(n log n) rather than its O(n²).
 *
 *  encoder.py repeatedly takes the lowest-ranked adjacent pair and merges all of its occurrences
 *  in one left-to-right pass, before looking at any pair that pass created. Here every adjacent
 *  pair with a rank sits in a heap; all entries of the lowest rank are taken out together and
 *  applied left to right (an entry whose nodes changed since it was pushed is stale and skipped),
 *  and only then can pairs created meanwhile come out. A merge never creates a pair of its own
 *  rank (that would need an empty token), so each batch is exactly encoder.py's pass. */
function bpe(symbols: readonly string[], ranks: ReadonlyMap<string, number>): string[] {
  const n = symbols.length;
  if (n < 2) return symbols.slice();
  const sym = symbols.slice();
  const next = new Int32Array(n);
  const prev = new Int32Array(n);
  const alive = new Uint8Array(n).fill(1);
  for (let i = 0; i < n; i++) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  const heap = new PairHeap();
  const consider = (left: number, right: number): void => {
    if (left < 0 || right < 0) return;
    const a = sym[left];
    const b = sym[right];
    const rank = ranks.get(`${a} ${b}`);
    if (rank !== undefined) heap.push({ rank, left, right, a, b });
  };
  for (let i = 0; i + 1 < n; i++) consider(i, i + 1);

  while (heap.size > 0) {
    const rank = heap.peek().rank;
    const batch: PairEntry[] = [];
    while (heap.size > 0 && heap.peek().rank === rank) batch.push(heap.pop());
    for (const e of batch) {
      const { left, right } = e;
      if (!alive[left] || next[left] !== right || sym[left] !== e.a || sym[right] !== e.b) continue;
      sym[left] = e.a + e.b;
      alive[right] = 0;
      const after = next[right];
      next[left] = after;
      if (after >= 0) prev[after] = left;
      consider(prev[left], left);
      consider(left, after);
    }
  }
  const out: string[] = [];
  for (let i = 0; i >= 0; i = next[i]) out.push(sym[i]);
  return out;
}

/** Encoded pieces are cached (as in encoder.py); past this many the cache starts over. */
const CACHE_LIMIT = 1 << 16;

class BpeTokenizer implements Tokenizer {
  private readonly cache = new Map<string, readonly number[]>();
  private readonly bytesOf = new Map<number, Uint8Array>();
  private readonly utf8Out = new TextEncoder();
  // ignoreBOM: a leading U+FEFF is text (Python's "utf-8" codec keeps it), not a byte-order mark.
  private readonly utf8In = new TextDecoder("utf-8", { ignoreBOM: true });

  constructor(
    private readonly vocab: ReadonlyMap<string, number>,
    private readonly tokenOf: ReadonlyMap<number, string>,
    private readonly ranks: ReadonlyMap<string, number>,
    private readonly vocabFile: string,
  ) {}

  encode(text: string): number[] {
    const lone = LONE_SURROGATE.exec(text);
    if (lone) {
      const code = lone[0].charCodeAt(0).toString(16).toUpperCase();
      fail(
        "input",
        "encode",
        `the text has a lone surrogate U+${code} at index ${lone.index}; UTF-8 cannot encode it`,
      );
    }
    const ids: number[] = [];
    for (const m of text.matchAll(PIECE)) {
      for (const id of this.encodePiece(m[0])) ids.push(id);
    }
    return ids;
  }

  private encodePiece(piece: string): readonly number[] {
    const hit = this.cache.get(piece);
    if (hit) return hit;
    const symbols = Array.from(this.utf8Out.encode(piece), (b) => BYTE_TO_CHAR[b]);
    const ids = bpe(symbols, this.ranks).map((token) => {
      const id = this.vocab.get(token);
      if (id === undefined)
        fail(
          "checkpoint",
          this.vocabFile,
          `token ${JSON.stringify(token)} (from ${JSON.stringify(piece)} after the merges in merges.txt) is not in the vocabulary`,
        );
      return id;
    });
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(piece, ids);
    return ids;
  }

  decode(ids: readonly number[]): string {
    const parts = ids.map((id) => this.tokenBytes(id));
    const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      bytes.set(p, at);
      at += p.length;
    }
    return this.utf8In.decode(bytes);
  }

  private tokenBytes(id: number): Uint8Array {
    const hit = this.bytesOf.get(id);
    if (hit) return hit;
    const token = this.tokenOf.get(id);
    if (token === undefined)
      fail(
        "input",
        this.vocabFile,
        `token id ${id} is not in the vocabulary (${this.vocabRange()})`,
      );
    const bytes = Uint8Array.from(token, (c) => {
      const b = CHAR_TO_BYTE.get(c);
      if (b === undefined) {
        const code = c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0");
        fail(
          "checkpoint",
          this.vocabFile,
          `token ${JSON.stringify(token)} (id ${id}) holds U+${code}, which is not one of GPT-2's byte characters; it cannot be decoded`,
        );
      }
      return b;
    });
    this.bytesOf.set(id, bytes);
    return bytes;
  }

  private vocabRange(): string {
    let max = -1;
    for (const id of this.tokenOf.keys()) max = Math.max(max, id);
    const n = this.tokenOf.size;
    return n === max + 1 ? `${n} tokens, ids 0..${max}` : `${n} tokens, ids up to ${max}`;
  }
}

function readText(file: string): string {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    const code = e instanceof Error && "code" in e ? String(e.code) : "";
    return fail("checkpoint", file, `cannot read (${code || String(e)})`);
  }
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return fail("checkpoint", file, "is not valid UTF-8");
  }
}

const MAX_ID = 2 ** 31 - 1;

/** vocab.json: an object from token string to distinct non-negative integer id. Kept as Maps, so
 *  a token spelled like an Object.prototype member ("__proto__", "constructor") is an ordinary key. */
function parseVocab(
  text: string,
  file: string,
): { vocab: Map<string, number>; tokenOf: Map<number, string> } {
  const json = parseStrictJson(text);
  if (!json.ok) {
    const e = json.error;
    const detail =
      e.duplicateKey !== undefined
        ? `token ${JSON.stringify(e.duplicateKey)} appears twice; readers disagree on which id wins`
        : `not valid JSON: ${e.message}`;
    fail("checkpoint", file, `${detail} (at character ${e.offset})`);
  }
  const top = json.value;
  if (top.kind !== "object")
    return fail("checkpoint", file, `must hold a JSON object of token → id, not ${a(top.kind)}`);
  const vocab = new Map<string, number>();
  const tokenOf = new Map<number, string>();
  for (const [token, v] of top.entries) {
    const id = v.kind === "number" && /^(0|[1-9][0-9]*)$/.test(v.text) ? Number(v.text) : -1;
    if (id < 0 || id > MAX_ID) {
      const got = v.kind === "number" ? v.text : a(v.kind);
      fail(
        "checkpoint",
        file,
        `token ${JSON.stringify(token)}: the id must be an integer in 0..${MAX_ID}, got ${got}`,
      );
    }
    const other = tokenOf.get(id);
    if (other !== undefined)
      fail(
        "checkpoint",
        file,
        `id ${id} belongs to two tokens, ${JSON.stringify(other)} and ${JSON.stringify(token)}`,
      );
    vocab.set(token, id);
    tokenOf.set(id, token);
  }
  return { vocab, tokenOf };
}

function a(kind: string): string {
  return /^[aeiou]/.test(kind) ? `an ${kind}` : `a ${kind}`;
}

/** merges.txt: a "#version" header line, then one merge "a b" per line, best (rank 0) first; the
 *  file may end with a newline. A pair listed twice takes its later rank, as in encoder.py. */
function parseMerges(text: string, file: string): Map<string, number> {
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  if (lines.length === 0 || !lines[0].startsWith("#version"))
    fail(
      "checkpoint",
      `${file}:1`,
      `must start with the "#version: ..." header line, got ${JSON.stringify(lines[0] ?? "")}`,
    );
  const ranks = new Map<string, number>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i].replace(/\r$/, "");
    const parts = line.split(" ");
    if (parts.length !== 2 || parts[0] === "" || parts[1] === "")
      fail(
        "checkpoint",
        `${file}:${i + 1}`,
        `a merge is two tokens separated by one space, got ${JSON.stringify(line)}`,
      );
    ranks.set(`${parts[0]} ${parts[1]}`, i - 1);
  }
  return ranks;
}

/** The checkpoint's tokenizer; when it has none, undefined, or an error if `required`. */
export function loadTokenizer(dir: string, required: boolean): Tokenizer | undefined {
  const vocabFile = join(dir, "vocab.json");
  const mergesFile = join(dir, "merges.txt");
  const hasVocab = existsSync(vocabFile);
  const hasMerges = existsSync(mergesFile);
  if (!hasVocab && !hasMerges) {
    if (required)
      fail(
        "input",
        dir,
        "--prompt needs a tokenizer: the checkpoint has no vocab.json + merges.txt; use --tokens",
      );
    return undefined;
  }
  if (!hasVocab)
    fail(
      "checkpoint",
      vocabFile,
      "missing: merges.txt is here, but the tokenizer needs vocab.json beside it",
    );
  if (!hasMerges)
    fail(
      "checkpoint",
      mergesFile,
      "missing: vocab.json is here, but the tokenizer needs merges.txt beside it",
    );
  const { vocab, tokenOf } = parseVocab(readText(vocabFile), vocabFile);
  const ranks = parseMerges(readText(mergesFile), mergesFile);
  return new BpeTokenizer(vocab, tokenOf, ranks, vocabFile);
}
