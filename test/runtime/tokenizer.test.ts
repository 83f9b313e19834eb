import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { KilnError, type ErrorKind } from "../../compiler/errors.ts";
import { loadTokenizer, preTokenize, type Tokenizer } from "../../runtime/tokenizer.ts";

const FIXTURE = join(import.meta.dirname, "../fixtures/tokenizer");

/** The fixture: 256 byte tokens, 400 merges trained on English text, "<|endoftext|>" (657 ids).
 *  expected.json holds encoder.py's answers (see make-fixture.py). */
interface Expected {
  readonly encode: readonly { readonly text: string; readonly ids: readonly number[] }[];
  readonly decode: readonly { readonly ids: readonly number[]; readonly text: string }[];
}
const expected = JSON.parse(readFileSync(join(FIXTURE, "expected.json"), "utf8")) as Expected;
const fixtureVocab = new Map(
  Object.entries(
    JSON.parse(readFileSync(join(FIXTURE, "vocab.json"), "utf8")) as Record<string, number>,
  ),
);
const fixtureToken = new Map([...fixtureVocab].map(([t, id]) => [id, t]));
const gpt2 = loadTokenizer(FIXTURE, true)!;

/** Token strings, for readable expectations. */
const tokens = (ids: readonly number[]): string[] => ids.map((id) => fixtureToken.get(id)!);

// ---- bytes_to_unicode, written out independently of the implementation ----

function byteSymbols(): string[] {
  const out: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    out.push(String.fromCodePoint(keep ? b : 256 + extra++));
  }
  return out;
}
const BYTE = byteSymbols();

// ---- temporary checkpoint folders ----

const made: string[] = [];
afterAll(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));

function folder(files: { vocab?: string; merges?: string }): string {
  const dir = mkdtempSync(join(tmpdir(), "kiln-tokenizer-"));
  made.push(dir);
  if (files.vocab !== undefined) writeFileSync(join(dir, "vocab.json"), files.vocab);
  if (files.merges !== undefined) writeFileSync(join(dir, "merges.txt"), files.merges);
  return dir;
}

/** A tokenizer over the 256 byte tokens plus one token per merge ("a b" → "ab"), in order. */
function byteLevel(
  merges: readonly string[],
  extra: readonly string[] = [],
): { tok: Tokenizer; vocab: Map<string, number> } {
  const vocab = new Map<string, number>();
  const add = (t: string) => vocab.has(t) || vocab.set(t, vocab.size);
  BYTE.forEach(add);
  merges.forEach((m) => add(m.replace(" ", "")));
  extra.forEach(add);
  const json = `{${[...vocab].map(([t, id]) => `${JSON.stringify(t)}:${id}`).join(",")}}`;
  const dir = folder({ vocab: json, merges: ["#version: 0.2", ...merges, ""].join("\n") });
  return { tok: loadTokenizer(dir, false)!, vocab };
}

function kilnError(f: () => unknown): KilnError {
  try {
    f();
  } catch (e) {
    if (e instanceof KilnError) return e;
    throw e;
  }
  return expect.fail("expected a KilnError");
}

function expectError(
  f: () => unknown,
  kind: ErrorKind,
  where: string | RegExp,
  detail: RegExp,
): void {
  const e = kilnError(f);
  expect(e.kind).toBe(kind);
  if (typeof where === "string") expect(e.where).toBe(where);
  else expect(e.where).toMatch(where);
  expect(e.detail).toMatch(detail);
}

// ---- a direct transcription of encoder.py's bpe, the oracle for the heap-based one ----

function referenceBpe(symbols: readonly string[], ranks: ReadonlyMap<string, number>): string[] {
  let word = symbols.slice();
  while (word.length > 1) {
    let best: [string, string] | undefined;
    let bestRank = Infinity;
    for (let i = 0; i + 1 < word.length; i++) {
      const r = ranks.get(`${word[i]} ${word[i + 1]}`);
      if (r !== undefined && r < bestRank) [best, bestRank] = [[word[i], word[i + 1]], r];
    }
    if (!best) break;
    const [first, second] = best;
    const merged: string[] = [];
    for (let i = 0; i < word.length;) {
      if (i + 1 < word.length && word[i] === first && word[i + 1] === second) {
        merged.push(first + second);
        i += 2;
      } else merged.push(word[i++]);
    }
    word = merged;
  }
  return word;
}

function referenceEncode(
  text: string,
  merges: readonly string[],
  vocab: ReadonlyMap<string, number>,
): number[] {
  const ranks = new Map(merges.map((m, i) => [m, i])); // a repeated merge keeps its last rank
  const utf8 = new TextEncoder();
  return preTokenize(text).flatMap((piece) =>
    referenceBpe(
      Array.from(utf8.encode(piece), (b) => BYTE[b]),
      ranks,
    ).map((t) => vocab.get(t)!),
  );
}

// ---- strings with the characters that matter ----

const interesting = fc.constantFrom(
  "'s",
  "'t",
  "'re",
  "'ve",
  "'m",
  "'ll",
  "'d",
  "'S",
  "'",
  " ",
  "  ",
  "\n",
  "\n\n",
  "\r\n",
  "\t",
  "\u00a0",
  "\u0085",
  "\u2028",
  "\u3000",
  "\ufeff",
  "\u200b",
  "\u200d",
  "\u0301",
  "\x1c",
  "\x00",
  "the",
  " the",
  "kiln",
  "The",
  "degrees",
  "1200",
  "²",
  "Ⅻ",
  "٣",
  "é",
  "窯",
  "陶器",
  "日本語",
  "🔥",
  "🏺",
  "👩‍👩‍👧‍👦",
  "🇫🇷",
  "<|endoftext|>",
  "!!",
  "...",
  '"',
  "(",
  "$",
);
const textArb = fc.string({
  unit: fc.oneof(
    { weight: 3, arbitrary: interesting },
    { weight: 2, arbitrary: fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 1 }) },
    { weight: 2, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) },
    { weight: 1, arbitrary: fc.string({ unit: "grapheme", minLength: 1, maxLength: 1 }) },
  ),
  maxLength: 30,
});

describe("preTokenize (GPT-2's pattern)", () => {
  it("splits contractions, words with their leading space, and whitespace runs", () => {
    expect(preTokenize("Hello world's  end\n")).toEqual([
      "Hello",
      " world",
      "'s",
      " ",
      " end",
      "\n",
    ]);
    expect(preTokenize("I'm sure they'll've it'd")).toEqual([
      "I",
      "'m",
      " sure",
      " they",
      "'ll",
      "'ve",
      " it",
      "'d",
    ]);
    // contractions are case-sensitive (encoder.py's own comment regrets it)
    expect(preTokenize("IT'S")).toEqual(["IT", "'", "S"]);
    expect(preTokenize("a\n\nb")).toEqual(["a", "\n", "\n", "b"]);
    expect(preTokenize("x   y")).toEqual(["x", "  ", " y"]);
    expect(preTokenize("end   ")).toEqual(["end", "   "]);
    expect(preTokenize("abc123 4.5!?")).toEqual(["abc", "123", " 4", ".", "5", "!?"]);
    expect(preTokenize(" ... ,x")).toEqual([" ...", " ,", "x"]);
    expect(preTokenize("窯 🔥🏺 é")).toEqual(["窯", " 🔥🏺", " é"]);
    expect(preTokenize("")).toEqual([]);
  });

  it("reads \\s as Python's regex does: U+0085 is whitespace, U+FEFF is not", () => {
    expect(preTokenize("a\u0085b")).toEqual(["a", "\u0085", "b"]);
    expect(preTokenize("a\u0085 b")).toEqual(["a", "\u0085", " b"]);
    expect(preTokenize("a \ufeffb")).toEqual(["a", " \ufeff", "b"]);
    expect(preTokenize("\u00a0\u00a0x")).toEqual(["\u00a0", "\u00a0", "x"]);
  });

  it("covers the text, in order", () => {
    fc.assert(fc.property(textArb, (s) => preTokenize(s).join("") === s));
  });
});

describe("the fixture tokenizer agrees with encoder.py", () => {
  it("encodes every recorded text to encoder.py's ids", () => {
    expect(expected.encode.length).toBeGreaterThan(300);
    for (const { text, ids } of expected.encode)
      expect(gpt2.encode(text), JSON.stringify(text)).toEqual(ids);
  });

  it("decodes every recorded id list to encoder.py's text (errors='replace')", () => {
    for (const { ids, text } of expected.decode)
      expect(gpt2.decode(ids), JSON.stringify(ids)).toBe(text);
  });

  it("gives the hand-checked tokens", () => {
    // pieces "Hello", " world", "'s", " ", " end", "\n". Ranks (merges.txt line - 2): "Ġ w" 3,
    // "o r" 13, "e n" 35, "l o" 36, "l d" 45, "Ġ e" 49, "e l" 63, "Ġw or" 80. So "Hello" is
    // H e l l o → H e l lo → H el lo; " end" takes "e n" before "Ġ e" can apply.
    expect(tokens(gpt2.encode("Hello world's  end\n"))).toEqual([
      "H",
      "el",
      "lo",
      "Ġwor",
      "ld",
      "'s",
      "Ġ",
      "Ġ",
      "en",
      "d",
      "Ċ",
    ]);
    expect(tokens(gpt2.encode("The kiln's 1200 degrees"))).toEqual([
      "The",
      "Ġkiln",
      "'s",
      "Ġ1200",
      "Ġdegrees",
    ]);
  });
});

describe("encode and decode", () => {
  it("round-trip any well-formed string", () => {
    fc.assert(
      fc.property(textArb, (s) => {
        const ids = gpt2.encode(s);
        expect(ids.every((id) => Number.isInteger(id) && id >= 0 && id < 657)).toBe(true);
        expect(gpt2.decode(ids)).toBe(s);
      }),
      { numRuns: 2000 },
    );
    fc.assert(fc.property(fc.string({ unit: "binary" }), (s) => gpt2.decode(gpt2.encode(s)) === s));
  });

  it("keep a leading U+FEFF (it is text, not a byte-order mark)", () => {
    expect(gpt2.decode(gpt2.encode("\ufeffx"))).toBe("\ufeffx");
  });

  it("decode invalid UTF-8 to U+FFFD per maximal subpart, as Python does", () => {
    const ids = (...bytes: number[]) => bytes.map((b) => fixtureVocab.get(BYTE[b])!);
    expect(gpt2.decode(ids(0xe7, 0xaa))).toBe("\ufffd");
    expect(gpt2.decode(ids(0x61, 0x80, 0x62))).toBe("a\ufffdb");
    expect(gpt2.decode(ids(0xed, 0xa0, 0x80))).toBe("\ufffd\ufffd\ufffd");
    // a split multi-byte character decodes whole once both halves are there
    const fire = gpt2.encode("🔥");
    expect(fire.length).toBeGreaterThan(1);
    expect(gpt2.decode(fire.slice(0, 1))).toBe("\ufffd");
    expect(gpt2.decode(fire)).toBe("🔥");
  });

  it("treat <|endoftext|> in text as text, and decode its id", () => {
    const eot = fixtureVocab.get("<|endoftext|>")!;
    expect(gpt2.encode("<|endoftext|>")).not.toContain(eot);
    expect(gpt2.decode([eot])).toBe("<|endoftext|>");
  });

  it("handle a very long piece quickly (the merges are not quadratic)", () => {
    const long = "kiln".repeat(25_000) + " " + "9".repeat(50_000);
    const t0 = performance.now();
    const ids = gpt2.encode(long);
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(gpt2.decode(ids)).toBe(long);
  });
});

describe("merges", () => {
  it("apply by rank, lowest first, not left to right", () => {
    const bcFirst = byteLevel(["b c", "a b"]);
    expect(bcFirst.tok.encode("abc")).toEqual([bcFirst.vocab.get("a"), bcFirst.vocab.get("bc")]);
    const abFirst = byteLevel(["a b", "b c"]);
    expect(abFirst.tok.encode("abc")).toEqual([abFirst.vocab.get("ab"), abFirst.vocab.get("c")]);
  });

  it("merge every occurrence of a pair, left to right without overlap, in one pass", () => {
    const { tok, vocab } = byteLevel(["a a"]);
    expect(tok.encode("aaa")).toEqual(["aa", "a"].map((t) => vocab.get(t)));
    expect(tok.encode("aaaa")).toEqual(["aa", "aa"].map((t) => vocab.get(t)));
  });

  it("finish a pass before a pair it created, even one of lower rank", () => {
    // "ab a" outranks "a b", but only exists once "a b" has merged; encoder.py merges both
    // "a b" in "abab" first, after which "ab a" no longer occurs.
    const { tok, vocab } = byteLevel(["ab a", "a b"], ["aba"]);
    expect(tok.encode("abab")).toEqual(["ab", "ab"].map((t) => vocab.get(t)));
  });

  it("give a pair listed twice its later rank", () => {
    const { tok, vocab } = byteLevel(["a b", "b c", "a b"]);
    expect(tok.encode("abc")).toEqual(["a", "bc"].map((t) => vocab.get(t)));
  });

  it("merge to hand-worked tokens", () => {
    const merges = [
      "h e",
      "l l",
      "he ll",
      "hell o",
      "Ġ w",
      "o r",
      "Ġw or",
      "Ġwor l",
      "Ġworl d",
      "' s",
      "Ġ e",
      "n d",
      "Ġe nd",
    ];
    const { tok, vocab } = byteLevel(merges);
    const ids = (...ts: string[]) => ts.map((t) => vocab.get(t));
    expect(tok.encode("hello world's  end\n")).toEqual(
      ids("hello", "Ġworld", "'s", "Ġ", "Ġend", "Ċ"),
    );
    expect(tok.encode("Hello")).toEqual(ids("H", "e", "ll", "o"));
    expect(tok.encode("ends")).toEqual(ids("e", "nd", "s"));
    expect(tok.decode(tok.encode("hello world's  end\n"))).toBe("hello world's  end\n");
  });

  it("agree with encoder.py's bpe on random merge tables", () => {
    const pick = fc.integer({ min: 0, max: 8 });
    fc.assert(
      fc.property(
        fc.array(fc.tuple(pick, pick, fc.integer({ min: 0, max: 5 })), { maxLength: 40 }),
        fc.array(fc.constantFrom("a", "b", "c", " ", "ab", "aba"), { maxLength: 40 }),
        (picks, chars) => {
          // merges over the tokens made so far; a pair may repeat
          const made = ["a", "b", "c", "Ġ"];
          const merges: { merge: string; key: number }[] = [];
          for (const [i, j, key] of picks) {
            const x = made[i % made.length];
            const y = made[j % made.length];
            merges.push({ merge: `${x} ${y}`, key });
            if (!made.includes(x + y)) made.push(x + y);
          }
          // then shuffled, so a merge may outrank the ones that make its parts
          const order = merges.sort((p, q) => p.key - q.key).map((m) => m.merge);
          const { tok, vocab } = byteLevel(order);
          const text = chars.join("");
          expect(tok.encode(text)).toEqual(referenceEncode(text, order, vocab));
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("leave tokens spelled like Object.prototype members alone", () => {
    const word = (w: string) =>
      Array.from(w.slice(1), (_c, i) => `${w.slice(0, i + 1)} ${w[i + 1]}`);
    const merges = ["_ _", ...word("proto"), "__ proto", "__proto __", ...word("constructor")];
    const { tok, vocab } = byteLevel(merges, ["toString", "hasOwnProperty"]);
    // "_" is punctuation, so "__proto__" is three pieces; the token exists all the same
    expect(tok.encode("__proto__")).toEqual(["__", "proto", "__"].map((t) => vocab.get(t)));
    expect(tok.decode([vocab.get("__proto__")!])).toBe("__proto__");
    expect(tok.encode("constructor")).toEqual([vocab.get("constructor")]);
    expect(tok.decode([vocab.get("toString")!, vocab.get("hasOwnProperty")!])).toBe(
      "toStringhasOwnProperty",
    );
    expect(tok.decode(tok.encode("__proto__ constructor toString"))).toBe(
      "__proto__ constructor toString",
    );
  });
});

describe("loading", () => {
  const vocab = JSON.stringify(Object.fromEntries(BYTE.map((t, i) => [t, i])));
  const merges = "#version: 0.2\n";

  it("returns undefined without vocab.json and merges.txt, or fails if required", () => {
    const dir = folder({});
    expect(loadTokenizer(dir, false)).toBeUndefined();
    expectError(
      () => loadTokenizer(dir, true),
      "input",
      dir,
      /--prompt needs a tokenizer: the checkpoint has no vocab.json \+ merges.txt; use --tokens/,
    );
  });

  it("fails when only one of the two files is there", () => {
    const onlyVocab = folder({ vocab });
    expectError(
      () => loadTokenizer(onlyVocab, false),
      "checkpoint",
      join(onlyVocab, "merges.txt"),
      /missing/,
    );
    const onlyMerges = folder({ merges });
    expectError(
      () => loadTokenizer(onlyMerges, false),
      "checkpoint",
      join(onlyMerges, "vocab.json"),
      /missing/,
    );
  });

  it("accepts a merges.txt without a final newline, or with CRLF line ends", () => {
    const tokenized = (m: string) => {
      const dir = folder({ vocab: vocab.replace(/}$/, `,"ab":256}`), merges: m });
      return loadTokenizer(dir, false)!.encode("ab");
    };
    expect(tokenized("#version: 0.2\na b")).toEqual([256]);
    expect(tokenized("#version: 0.2\r\na b\r\n")).toEqual([256]);
    expect(tokenized("#version: 0.2\n")).toEqual([BYTE.indexOf("a"), BYTE.indexOf("b")]);
  });

  it.each([
    ["not JSON", "{", /not valid JSON/],
    ["an array", "[]", /must hold a JSON object of token → id, not an array/],
    [
      "a string id",
      '{"a":"1"}',
      /token "a": the id must be an integer in 0\.\.2147483647, got a string/,
    ],
    ["a negative id", '{"a":-1}', /got -1/],
    ["a fractional id", '{"a":1.5}', /got 1\.5/],
    ["an exponent id", '{"a":1e2}', /got 1e2/],
    ["a too-large id", '{"a":4294967296}', /got 4294967296/],
    ["a null id", '{"a":null}', /got a null/],
    ["a key twice", '{"a":0,"a":1}', /token "a" appears twice/],
    ["an id twice", '{"a":0,"b":0}', /id 0 belongs to two tokens, "a" and "b"/],
  ])("rejects a vocab.json with %s", (_what, text, detail) => {
    const dir = folder({ vocab: text, merges });
    expectError(() => loadTokenizer(dir, false), "checkpoint", join(dir, "vocab.json"), detail);
  });

  it("rejects a vocab.json that is not UTF-8", () => {
    const dir = folder({ merges });
    writeFileSync(join(dir, "vocab.json"), Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x30, 0x7d]));
    expectError(
      () => loadTokenizer(dir, false),
      "checkpoint",
      join(dir, "vocab.json"),
      /not valid UTF-8/,
    );
  });

  it.each([
    ["no header", "a b\n", 1, /must start with the "#version: \.\.\." header line, got "a b"/],
    ["an empty file", "", 1, /header line, got ""/],
    ["one token", "#version: 0.2\na b\nab\n", 3, /two tokens separated by one space, got "ab"/],
    ["three tokens", "#version: 0.2\na b c\n", 2, /got "a b c"/],
    ["an empty line", "#version: 0.2\na b\n\nb c\n", 3, /got ""/],
    ["two spaces", "#version: 0.2\na  b\n", 2, /got "a  b"/],
  ])("rejects a merges.txt with %s, naming the line", (_what, text, line, detail) => {
    const dir = folder({ vocab, merges: text });
    expectError(
      () => loadTokenizer(dir, false),
      "checkpoint",
      `${join(dir, "merges.txt")}:${line}`,
      detail,
    );
  });

  it("fails, naming the file, on a folder where a file should be", () => {
    const dir = folder({ vocab });
    mkdirSync(join(dir, "merges.txt"));
    expectError(
      () => loadTokenizer(dir, false),
      "checkpoint",
      join(dir, "merges.txt"),
      /cannot read \(EISDIR\)/,
    );
  });
});

describe("errors at run time", () => {
  it("decode rejects an id outside the vocabulary, naming it", () => {
    const file = join(FIXTURE, "vocab.json");
    expectError(
      () => gpt2.decode([1, 657]),
      "input",
      file,
      /token id 657 is not in the vocabulary \(657 tokens, ids 0\.\.656\)/,
    );
    expectError(() => gpt2.decode([-1]), "input", file, /token id -1 /);
    expectError(() => gpt2.decode([1.5]), "input", file, /token id 1\.5 /);
    expectError(() => gpt2.decode([Number.NaN]), "input", file, /token id NaN /);
  });

  it("encode rejects a lone surrogate", () => {
    expectError(
      () => gpt2.encode("ok \ud83d"),
      "input",
      "encode",
      /lone surrogate U\+D83D at index 3/,
    );
    expectError(() => gpt2.encode("\ude00x"), "input", "encode", /U\+DE00 at index 0/);
  });

  it("encode fails, naming vocab.json, when a merged token is not in the vocabulary", () => {
    const noA = JSON.stringify(
      Object.fromEntries(BYTE.filter((t) => t !== "a").map((t, i) => [t, i])),
    );
    const dir = folder({ vocab: noA, merges: "#version: 0.2\nx y\n" });
    const tok = loadTokenizer(dir, false)!;
    expect(tok.decode(tok.encode("yx"))).toBe("yx");
    expectError(
      () => tok.encode("cat"),
      "checkpoint",
      join(dir, "vocab.json"),
      /token "a" \(from "cat" after the merges in merges.txt\) is not in the vocabulary/,
    );
    expectError(
      () => tok.encode("a xyz"),
      "checkpoint",
      join(dir, "vocab.json"),
      /token "a" \(from "a"/,
    );
    expectError(
      () => tok.encode(" xyz"),
      "checkpoint",
      join(dir, "vocab.json"),
      /token "xy" \(from " xyz"/,
    );
  });

  it("decode fails on a vocabulary token outside GPT-2's byte characters", () => {
    const dir = folder({ vocab: JSON.stringify({ a: 0, ſ: 1 }), merges: "#version: 0.2\n" });
    const tok = loadTokenizer(dir, false)!;
    expect(tok.decode([0])).toBe("a");
    expectError(
      () => tok.decode([1]),
      "checkpoint",
      join(dir, "vocab.json"),
      /"ſ" \(id 1\) holds U\+017F/,
    );
  });
});

// ---- a live cross-check with Python, when a python3 with the `regex` module is here ----

function pythonWithRegex(): string | undefined {
  for (const py of ["python3", "/usr/bin/python3"]) {
    const r = spawnSync(py, ["-c", "import regex"], { encoding: "utf8" });
    if (r.status === 0) return py;
  }
  return undefined;
}
const python = pythonWithRegex();

describe.skipIf(python === undefined)("live cross-check with make-fixture.py's encoder.py", () => {
  it("agrees on random text and random ids", () => {
    const texts = fc.sample(textArb, { numRuns: 3000, seed: 1 });
    texts.push(
      ...fc.sample(fc.string({ unit: "binary", maxLength: 60 }), { numRuns: 1000, seed: 2 }),
    );
    const ids = fc.sample(fc.array(fc.integer({ min: 0, max: 656 }), { maxLength: 12 }), {
      numRuns: 1000,
      seed: 3,
    });
    ids.push(
      ...fc.sample(fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 8 }), {
        numRuns: 1000,
        seed: 4,
      }),
    );
    const r = spawnSync(python!, [join(FIXTURE, "make-fixture.py"), "--check"], {
      input: JSON.stringify({ texts, ids }),
      encoding: "utf8",
      maxBuffer: 1 << 28,
    });
    expect(r.status, r.stderr).toBe(0);
    const got = JSON.parse(r.stdout) as { encoded: number[][]; decoded: string[] };
    texts.forEach((t, i) => expect(gpt2.encode(t), JSON.stringify(t)).toEqual(got.encoded[i]));
    ids.forEach((x, i) => expect(gpt2.decode(x), JSON.stringify(x)).toBe(got.decoded[i]));
  });
});
