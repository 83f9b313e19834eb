import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MAX_JSON_DEPTH, parseStrictJson, type JsonValue } from "../../runtime/strict-json.ts";

/** Back to what JSON.parse would give (numbers as doubles; "__proto__" an own key). */
function plain(v: JsonValue): unknown {
  switch (v.kind) {
    case "object":
      return Object.fromEntries([...v.entries].map(([k, x]) => [k, plain(x)]));
    case "array":
      return v.items.map(plain);
    case "number":
      return Number(v.text);
    case "string":
    case "boolean":
      return v.value;
    case "null":
      return null;
  }
}

function error(text: string): string {
  const r = parseStrictJson(text);
  if (r.ok) return expect.fail(`accepted ${JSON.stringify(text)}`);
  return r.error.message;
}

describe("parseStrictJson", () => {
  it("agrees with JSON.parse on JSON without duplicate keys", () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.constantFrom(undefined, 2), (v, indent) => {
        const text = JSON.stringify(v, null, indent);
        const r = parseStrictJson(text);
        expect(r.ok).toBe(true);
        if (r.ok) expect(plain(r.value)).toEqual(JSON.parse(text));
      }),
    );
  });

  it("keeps number text exactly", () => {
    const r = parseStrictJson("[18446744073709551617, -0.5e-3, 0]");
    expect(
      r.ok && r.value.kind === "array" && r.value.items.map((x) => x.kind === "number" && x.text),
    ).toEqual(["18446744073709551617", "-0.5e-3", "0"]);
  });

  it("decodes escapes, surrogate pairs included", () => {
    const r = parseStrictJson(String.raw`"a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"`);
    expect(r.ok && r.value.kind === "string" && r.value.value).toBe('a"\\/\b\f\n\r\té😀');
  });

  it("refuses duplicate keys at any depth, with the path to them", () => {
    expect(error('{"a":1,"a":2}')).toBe('duplicate key "a"');
    const r = parseStrictJson('{"x":[{"k":1,"b":2,"k":3}]}');
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.duplicateKey).toBe("k");
      expect(r.error.path).toEqual(["x", "[0]"]);
      expect(r.error.offset).toBe(19);
    }
  });

  it("refuses what RFC 8259 does not allow", () => {
    for (const bad of [
      "",
      "{",
      "[1,]",
      '{"a":1,}',
      "01",
      "1.",
      ".5",
      "+1",
      "-",
      "1e",
      "NaN",
      "Infinity",
      "'a'",
      '"\\x41"',
      '"\\u12"',
      '"a\nb"',
      "tru",
      "nul",
      "{a:1}",
      '{"a" 1}',
      "[1 2]",
      "1 2",
      "\u00a01",
    ]) {
      expect(parseStrictJson(bad).ok, JSON.stringify(bad)).toBe(false);
    }
  });

  it("refuses lone surrogates in escapes", () => {
    expect(error('"\\ud800"')).toMatch(/lone surrogate/);
    expect(error('"\\udc00\\ud800"')).toMatch(/lone surrogate/);
    expect(error('"\\ud800\\u0041"')).toMatch(/lone surrogate/);
  });

  it(`allows ${MAX_JSON_DEPTH} levels of nesting and no more, without recursion errors`, () => {
    const nest = (n: number) => "[".repeat(n) + "]".repeat(n);
    expect(parseStrictJson(nest(MAX_JSON_DEPTH)).ok).toBe(true);
    expect(error(nest(MAX_JSON_DEPTH + 1))).toMatch(/nested deeper/);
    expect(error('{"a":'.repeat(1_000_000))).toMatch(/nested deeper/);
  });

  it("never throws, whatever the text", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), (s) => {
        parseStrictJson(s);
        parseStrictJson(`{${s}`);
        parseStrictJson(`["${s}`);
      }),
    );
  });
});
