/** A strict JSON reader for headers that come from untrusted files.
 *
 *  Why not JSON.parse: it silently keeps the last of two equal keys (so two readers can see two
 *  different files in the same bytes), turns big integers into approximate doubles, and recurses
 *  without bound. This reader follows RFC 8259 exactly and, in addition:
 *  - rejects a key that appears twice in one object;
 *  - keeps every number as its source text, so callers can check integers exactly (BigInt);
 *  - rejects `\u` escapes that leave a lone surrogate (the text would not be valid UTF-8 again);
 *  - limits nesting to 128 levels, as serde_json does, so deep input cannot overflow the stack.
 *  It never throws: the result says where and why the text is not JSON. */

export type JsonValue =
  | { readonly kind: "object"; readonly entries: ReadonlyMap<string, JsonValue> }
  | { readonly kind: "array"; readonly items: readonly JsonValue[] }
  | { readonly kind: "string"; readonly value: string }
  | { readonly kind: "number"; readonly text: string }
  | { readonly kind: "boolean"; readonly value: boolean }
  | { readonly kind: "null" };

export type JsonResult =
  | { readonly ok: true; readonly value: JsonValue }
  | { readonly ok: false; readonly error: JsonError };

export interface JsonError {
  readonly message: string;
  /** A UTF-16 index into the text. */
  readonly offset: number;
  /** The keys (and `[i]` array indices) leading to the error, outermost first. */
  readonly path: readonly string[];
  /** Set when the error is a key that appears twice in one object. */
  readonly duplicateKey?: string;
}

export const MAX_JSON_DEPTH = 128;

class JsonSyntaxError {
  constructor(readonly error: JsonError) {}
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const ESCAPES: Readonly<Record<string, string>> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};

export function parseStrictJson(text: string): JsonResult {
  const parser = new Parser(text);
  try {
    const value = parser.value();
    parser.skipSpace();
    if (parser.pos < text.length) parser.error("unexpected text after the end of the JSON value");
    return { ok: true, value };
  } catch (e) {
    if (e instanceof JsonSyntaxError) return { ok: false, error: e.error };
    throw e;
  }
}

class Parser {
  pos = 0;
  private readonly path: string[] = [];
  constructor(private readonly text: string) {}

  error(message: string, at = this.pos, duplicateKey?: string): never {
    throw new JsonSyntaxError({ message, offset: at, path: [...this.path], duplicateKey });
  }

  skipSpace(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return;
      this.pos++;
    }
  }

  value(): JsonValue {
    this.skipSpace();
    const c = this.text[this.pos];
    if (c === "{") return this.object();
    if (c === "[") return this.array();
    if (c === '"') return { kind: "string", value: this.string() };
    if (c === "t" || c === "f" || c === "n") return this.literal();
    if (c === "-" || (c !== undefined && c >= "0" && c <= "9")) return this.number();
    return this.error(
      c === undefined ? "unexpected end of text, expected a value" : `unexpected ${describe(c)}`,
    );
  }

  private enter(): void {
    if (this.path.length >= MAX_JSON_DEPTH)
      this.error(`nested deeper than ${MAX_JSON_DEPTH} levels`);
  }

  private object(): JsonValue {
    this.enter();
    const entries = new Map<string, JsonValue>();
    this.pos++; // {
    this.skipSpace();
    if (this.text[this.pos] === "}") {
      this.pos++;
      return { kind: "object", entries };
    }
    for (;;) {
      this.skipSpace();
      const keyAt = this.pos;
      if (this.text[this.pos] !== '"') this.error("expected a string key");
      const key = this.string();
      if (entries.has(key)) this.error(`duplicate key ${JSON.stringify(key)}`, keyAt, key);
      this.skipSpace();
      if (this.text[this.pos] !== ":") this.error(`expected ':' after key ${JSON.stringify(key)}`);
      this.pos++;
      this.path.push(key);
      entries.set(key, this.value());
      this.path.pop();
      this.skipSpace();
      const c = this.text[this.pos++];
      if (c === "}") return { kind: "object", entries };
      if (c !== ",") this.error("expected ',' or '}' in object", this.pos - 1);
    }
  }

  private array(): JsonValue {
    this.enter();
    const items: JsonValue[] = [];
    this.pos++; // [
    this.skipSpace();
    if (this.text[this.pos] === "]") {
      this.pos++;
      return { kind: "array", items };
    }
    this.path.push(""); // counts toward depth; arrays add no key
    for (;;) {
      this.path[this.path.length - 1] = `[${items.length}]`;
      items.push(this.value());
      this.skipSpace();
      const c = this.text[this.pos++];
      if (c === "]") break;
      if (c !== ",") this.error("expected ',' or ']' in array", this.pos - 1);
    }
    this.path.pop();
    return { kind: "array", items };
  }

  private string(): string {
    const t = this.text;
    const start = this.pos++;
    let out = "";
    let run = this.pos; // start of the current run of unescaped characters
    for (;;) {
      if (this.pos >= t.length) this.error("unterminated string", start);
      const c = t.charCodeAt(this.pos);
      if (c === 0x22) break;
      if (c < 0x20) this.error("control character in string (it must be escaped)");
      if (c !== 0x5c) {
        this.pos++;
        continue;
      }
      out += t.slice(run, this.pos);
      out += this.escape();
      run = this.pos;
    }
    out += t.slice(run, this.pos);
    this.pos++; // closing quote
    return out;
  }

  /** At a backslash: returns what the escape stands for, a whole surrogate pair at once. */
  private escape(): string {
    const at = this.pos;
    const e = this.text[this.pos + 1];
    if (e !== undefined && e in ESCAPES) {
      this.pos += 2;
      return ESCAPES[e];
    }
    if (e !== "u") this.error(`invalid escape ${JSON.stringify("\\" + (e ?? ""))}`);
    const hi = this.hex4(this.pos + 2);
    this.pos += 6;
    if (hi < 0xd800 || hi > 0xdfff) return String.fromCharCode(hi);
    const lo = this.text.startsWith("\\u", this.pos) ? this.hex4(this.pos + 2) : -1;
    if (hi > 0xdbff || lo < 0xdc00 || lo > 0xdfff)
      this.error("\\u escape leaves a lone surrogate", at);
    this.pos += 6;
    return String.fromCharCode(hi, lo);
  }

  private hex4(at: number): number {
    const digits = this.text.slice(at, at + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(digits)) this.error("\\u must be followed by four hex digits", at);
    return parseInt(digits, 16);
  }

  private literal(): JsonValue {
    for (const [word, value] of [
      ["true", { kind: "boolean", value: true }],
      ["false", { kind: "boolean", value: false }],
      ["null", { kind: "null" }],
    ] as const) {
      if (this.text.startsWith(word, this.pos)) {
        this.pos += word.length;
        return value;
      }
    }
    return this.error(`unexpected ${describe(this.text[this.pos])}`);
  }

  private number(): JsonValue {
    NUMBER.lastIndex = this.pos;
    const m = NUMBER.exec(this.text);
    if (m === null) this.error("invalid number");
    this.pos += m[0].length;
    return { kind: "number", text: m[0] };
  }
}

function describe(c: string | undefined): string {
  return c === undefined ? "end of text" : `character ${JSON.stringify(c)}`;
}
