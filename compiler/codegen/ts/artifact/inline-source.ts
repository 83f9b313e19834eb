/** Copies top-level declarations out of kiln's own TypeScript files into one module, so an
 *  artifact carries the runtime's code itself (the strict safetensors reader, the sampler) rather
 *  than a second version of it that could drift.
 *
 *  Rule: from the given files (in dependency order), keep the top-level declarations reachable
 *  from `roots` through the names they mention, in file order, with `import` and re-`export`
 *  statements dropped and the `export` keyword removed except on the names in `exported`.
 *  Preconditions, checked: a file's top level holds only declarations (no statement runs for its
 *  effect); a name declared in two files is declared with the same text (e.g. a shared type
 *  alias), otherwise the files cannot share one scope; every root exists. A name that is mentioned
 *  but declared in none of the files is left to the module's scope (a global, or something the
 *  caller declares) — the type check of the whole artifact catches what is missing. */
import { ts } from "ts-morph";

export interface SourceFileText {
  /** For messages: the file's path. */
  readonly path: string;
  readonly text: string;
}

interface Declaration {
  readonly names: readonly string[];
  readonly file: string;
  /** The statement's text with its leading comment, `export` removed. */
  readonly text: string;
  /** The same, for the names in `exported`. */
  readonly exportedText: string;
  /** Identifiers it mentions (a superset of the top-level names it uses). */
  readonly mentions: ReadonlySet<string>;
}

/** The names a top-level statement declares; undefined for a statement that is no declaration. */
function declaredNames(s: ts.Statement): string[] | undefined {
  if (
    ts.isFunctionDeclaration(s) ||
    ts.isClassDeclaration(s) ||
    ts.isInterfaceDeclaration(s) ||
    ts.isTypeAliasDeclaration(s) ||
    ts.isEnumDeclaration(s)
  )
    return s.name ? [s.name.text] : undefined;
  if (ts.isVariableStatement(s))
    return s.declarationList.declarations.map((d) => {
      if (!ts.isIdentifier(d.name))
        throw new Error(`inline-source: destructuring at top level is not supported`);
      return d.name.text;
    });
  return undefined;
}

/** Identifiers in `node` that may name a declaration: property names after a dot and keys of
 *  object literals, interfaces and classes are not references. */
function mentions(node: ts.Node): Set<string> {
  const out = new Set<string>();
  const visit = (n: ts.Node): void => {
    if (ts.isIdentifier(n)) {
      const p = n.parent;
      const isKey =
        (ts.isPropertyAccessExpression(p) && p.name === n) ||
        ((ts.isPropertyAssignment(p) ||
          ts.isPropertySignature(p) ||
          ts.isPropertyDeclaration(p) ||
          ts.isMethodDeclaration(p) ||
          ts.isMethodSignature(p)) &&
          p.name === n);
      if (!isKey) out.add(n.text);
    }
    ts.forEachChild(n, visit);
  };
  visit(node);
  return out;
}

function parse(file: SourceFileText): Declaration[] {
  const sf = ts.createSourceFile(file.path, file.text, ts.ScriptTarget.ES2022, true);
  const out: Declaration[] = [];
  sf.statements.forEach((s, i) => {
    const d = declaration(file, sf, s, i === 0);
    if (d) out.push(d);
  });
  return out;
}

/** One statement as a Declaration; undefined for an import or export list. The file's header
 *  comment (the leading comment of its first statement) describes the file, not the
 *  declaration, and is not copied. */
function declaration(
  file: SourceFileText,
  sf: ts.SourceFile,
  s: ts.Statement,
  first: boolean,
): Declaration | undefined {
  if (ts.isImportDeclaration(s) || ts.isExportDeclaration(s)) return undefined;
  const names = declaredNames(s);
  if (!names)
    throw new Error(
      `inline-source: ${file.path}:${sf.getLineAndCharacterOfPosition(s.getStart()).line + 1}: only declarations can be inlined`,
    );
  const mods = ts.canHaveModifiers(s) ? (ts.getModifiers(s) ?? []) : [];
  if (mods.some((m) => m.kind === ts.SyntaxKind.DefaultKeyword))
    throw new Error(`inline-source: ${file.path}: a default export cannot be inlined`);
  const exp = mods.find((m) => m.kind === ts.SyntaxKind.ExportKeyword);
  // From the statement's own leading comment (or, for the first, its first token) to its end.
  const from = first ? s.getStart() : s.getFullStart();
  const full = file.text.slice(from, s.getEnd()).replace(/^\s*\n/, "");
  const base = s.getEnd() - full.length;
  let text = full;
  let exportedText = full;
  if (exp) {
    const at = exp.getStart() - base;
    text = full.slice(0, at) + full.slice(at + "export".length).replace(/^\s+/, "");
  } else {
    const at = s.getStart() - base;
    exportedText = `${full.slice(0, at)}export ${full.slice(at)}`;
  }
  return { names, file: file.path, text, exportedText, mentions: mentions(s) };
}

export function inlineDeclarations(
  files: readonly SourceFileText[],
  roots: readonly string[],
  exported: ReadonlySet<string> = new Set(),
): string {
  const all = files.flatMap(parse);
  const byName = new Map<string, Declaration>();
  const kept: Declaration[] = [];
  for (const d of all)
    for (const n of d.names) {
      const prev = byName.get(n);
      if (prev === undefined) byName.set(n, d);
      else if (prev !== d && prev.text.trim() !== d.text.trim())
        throw new Error(
          `inline-source: ${n} is declared differently in ${prev.file} and ${d.file}; one scope cannot hold both`,
        );
    }
  const reached = new Set<Declaration>();
  const queue = roots.map((r) => {
    const d = byName.get(r);
    if (!d) throw new Error(`inline-source: ${r} is declared in none of the files`);
    return d;
  });
  while (queue.length) {
    const d = queue.pop()!;
    if (reached.has(d)) continue;
    reached.add(d);
    for (const m of d.mentions) {
      const dep = byName.get(m);
      if (dep && !reached.has(dep)) queue.push(dep);
    }
  }
  for (const d of all) if (reached.has(d)) kept.push(d);
  return kept
    .map((d, i) => {
      const text = (d.names.some((n) => exported.has(n)) ? d.exportedText : d.text).trimEnd();
      return d.file === kept[i - 1]?.file ? text : `// from ${d.file}\n\n${text}`;
    })
    .join("\n\n");
}

/** A self-contained module's text with its `export` keywords removed, so it can sit in a
 *  function body: it may import nothing, and export only declarations (no `export default`,
 *  no `export { … }` lists, which are dropped only when they re-export local names). */
export function withoutExports(file: SourceFileText): string {
  const sf = ts.createSourceFile(file.path, file.text, ts.ScriptTarget.ES2022, true);
  const cuts: [number, number][] = [];
  for (const s of sf.statements) {
    if (ts.isImportDeclaration(s) || ts.isImportEqualsDeclaration(s))
      throw new Error(`inline-source: ${file.path}: the module imports; it must be self-contained`);
    if (ts.isExportAssignment(s))
      throw new Error(`inline-source: ${file.path}: a default export cannot be inlined`);
    if (ts.isExportDeclaration(s)) {
      if (s.moduleSpecifier)
        throw new Error(`inline-source: ${file.path}: the module re-exports from another module`);
      cuts.push([s.getStart(), s.getEnd()]);
      continue;
    }
    const mods = ts.canHaveModifiers(s) ? (ts.getModifiers(s) ?? []) : [];
    if (mods.some((m) => m.kind === ts.SyntaxKind.DefaultKeyword))
      throw new Error(`inline-source: ${file.path}: a default export cannot be inlined`);
    if (mods.some((m) => m.kind === ts.SyntaxKind.DeclareKeyword))
      throw new Error(`inline-source: ${file.path}: a \`declare\` cannot sit in a function body`);
    const exp = mods.find((m) => m.kind === ts.SyntaxKind.ExportKeyword);
    if (exp) {
      let end = exp.getEnd();
      while (/\s/.test(file.text[end] ?? "")) end++;
      cuts.push([exp.getStart(), end]);
    }
  }
  let out = file.text;
  for (const [a, b] of cuts.reverse()) out = out.slice(0, a) + out.slice(b);
  return out;
}
