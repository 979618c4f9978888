// Parses diagrams with Mermaid's own parser (mermaid.parse), headless under Node: reads
// [{"name", "text"}] as JSON on stdin, prints [{"name", "error": null | "message"}] as JSON.
// mermaid 11's parse needs no DOM for sequence diagrams (rendering would); it is imported from
// the node_modules `npm ci` put beside this file (xtask/src/emulator/mermaid.rs).
import { readFileSync } from 'node:fs';

const { default: mermaid } = await import('mermaid');
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
