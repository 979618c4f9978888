// Parses diagrams with Mermaid's own parser (mermaid.parse), headless under Node: reads
// [{"name", "text"}] as JSON on stdin, prints [{"name", "error": null | "message"}] as JSON.
// mermaid 11's parse needs no DOM for sequence diagrams (rendering would). The module to import is
// the first argument: the pinned package's self-contained build, which xtask unpacked beside this
// file (xtask/mermaid/pin.toml, xtask/src/emulator/mermaid.rs).
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const { default: mermaid } = await import(pathToFileURL(resolve(process.argv[2])).href);
const diagrams = JSON.parse(readFileSync(0, 'utf8'));
const out = [];
for (const { name, text } of diagrams) {
  try {
    await mermaid.parse(text);
    out.push({ name, error: null });
  } catch (e) {
    out.push({ name, error: String(e && e.message ? e.message : e) });
  }
}
process.stdout.write(JSON.stringify(out));
