// Public API documentation: every export of lib/index.ts, every public Engine member and every
// option field has TSDoc; exports and members carry an @example, and every example type-checks
// against the real types (strict), as the README's examples do in readme.test.ts.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import ts from 'typescript';
import { describe, expect, it } from 'vitest';

import { repoRoot } from './support/data.js';

const COMPILER: ts.CompilerOptions = {
  strict: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext,
  target: ts.ScriptTarget.ES2022, skipLibCheck: true, noEmit: true, types: ['node'],
};

interface Documented {
  name: string;
  doc: string;
  examples: string[];
}

function describeSymbol(name: string, symbol: ts.Symbol, checker: ts.TypeChecker): Documented {
  return {
    name,
    doc: ts.displayPartsToString(symbol.getDocumentationComment(checker)).trim(),
    examples: symbol.getJsDocTags(checker).filter((t) => t.name === 'example').map((t) => ts.displayPartsToString(t.text)),
  };
}

/** The public surface: exports, Engine's public members, and the fields of exported interfaces. */
function publicApi(): { exports: Documented[]; members: Documented[]; fields: Documented[]; names: string[] } {
  const index = path.join(repoRoot, 'lib/index.ts');
  const program = ts.createProgram([index], COMPILER);
  const checker = program.getTypeChecker();
  const moduleSymbol = checker.getSymbolAtLocation(program.getSourceFile(index)!)!;
  const exports: Documented[] = [], members: Documented[] = [], fields: Documented[] = [], names: string[] = [];
  for (const e of checker.getExportsOfModule(moduleSymbol)) {
    const symbol = e.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(e) : e;
    names.push(e.name);
    exports.push(describeSymbol(e.name, symbol, checker));
    if (symbol.flags & ts.SymbolFlags.Interface) {
      for (const prop of checker.getDeclaredTypeOfSymbol(symbol).getProperties()) fields.push(describeSymbol(`${e.name}.${prop.name}`, prop, checker));
    }
    if (symbol.flags & ts.SymbolFlags.Class) {
      // The class's own members and those it inherits (Engine and Ensemble share a base class).
      const decls: ts.ClassDeclaration[] = [];
      for (let c: ts.Symbol | undefined = symbol; c; ) {
        const decl: ts.ClassDeclaration | undefined = c.declarations?.find(ts.isClassDeclaration);
        if (!decl || decl.getSourceFile().isDeclarationFile) break; // a built-in base (Error)
        decls.push(decl);
        const base: ts.ExpressionWithTypeArguments | undefined = decl.heritageClauses?.find((h: ts.HeritageClause) => h.token === ts.SyntaxKind.ExtendsKeyword)?.types[0];
        const b: ts.Symbol | undefined = base && checker.getSymbolAtLocation(base.expression);
        c = b && b.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(b) : b;
      }
      for (const m of decls.flatMap((d) => [...d.members])) {
        if (!m.name || ts.isPrivateIdentifier(m.name) || ts.isConstructorDeclaration(m)) continue;
        if (ts.getCombinedModifierFlags(m) & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) continue;
        members.push(describeSymbol(`${e.name}.${m.name.getText()}`, checker.getSymbolAtLocation(m.name)!, checker));
      }
    }
  }
  return { exports, members, fields, names };
}

describe('public API docs', () => {
  const api = publicApi();

  it('every export and every public Engine member has TSDoc with an @example', () => {
    expect(api.exports.length).toBeGreaterThanOrEqual(15);
    expect(api.members.map((m) => m.name)).toEqual(expect.arrayContaining(['Engine.create', 'Engine.load', 'Engine.fit', 'Engine.score', 'Engine.scoreStream']));
    const missing = [...api.exports, ...api.members].filter((d) => d.doc === '' || d.examples.length === 0).map((d) => d.name);
    expect(missing).toEqual([]);
  });

  it('every field of the exported interfaces (options, results) is documented', () => {
    expect(api.fields.map((f) => f.name)).toEqual(expect.arrayContaining(['EngineOptions.device', 'HeadOptions.weightDecay', 'FitOptions.onProgress']));
    expect(api.fields.filter((f) => f.doc === '').map((f) => f.name)).toEqual([]);
  });

  it('every @example type-checks against the public types', () => {
    const dir = path.join(repoRoot, 'build/api-doc-examples');
    mkdirSync(dir, { recursive: true });
    const lib = path.relative(dir, path.join(repoRoot, 'lib/index.js')).split(path.sep).join('/');
    // Each example runs in its own block, with these in scope (examples may shadow them).
    const preamble = `import { ${api.names.join(', ')} } from '${lib}';\n` +
      'declare const engine: Engine;\ndeclare const goodImages: string[];\ndeclare const signal: AbortSignal;\n';
    // Numbered: names that differ only in case (runtimeInfo, RuntimeInfo) must not share a file.
    const files = [...api.exports, ...api.members].flatMap((d, n) =>
      d.examples.map((code, i) => {
        const file = path.join(dir, `${n}_${d.name.replace(/\W/g, '_')}_${i}.ts`);
        writeFileSync(file, `${preamble}{\n${code}\n}\nexport {};\n`);
        return file;
      }),
    );
    expect(files.length).toBeGreaterThanOrEqual(api.exports.length);
    const program = ts.createProgram(files, COMPILER);
    const errors = ts.getPreEmitDiagnostics(program).map((d) => {
      const where = d.file ? `${path.basename(d.file.fileName)}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}` : '';
      return `${where} ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
    expect(errors).toEqual([]);
  });
});
