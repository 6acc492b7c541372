// `npm run build` writes dist/natterbox-scv-connector.js; `npm run check` fails when the committed
// bundle differs from what the source builds to (the sidecar embeds the committed file).
import { build } from "esbuild";
import { readFileSync, writeFileSync } from "node:fs";

const out = new URL("./dist/natterbox-scv-connector.js", import.meta.url);
const result = await build({
  entryPoints: [new URL("./src/index.js", import.meta.url).pathname],
  bundle: true,
  format: "iife",
  target: "es2019",
  minify: true,
  legalComments: "eof",
  write: false,
  logLevel: "warning",
});
const text = result.outputFiles[0].text;
if (process.argv.includes("--check")) {
  let committed = "";
  try {
    committed = readFileSync(out, "utf8");
  } catch {}
  if (committed !== text) {
    console.error("dist/natterbox-scv-connector.js is not what the source builds to: run `npm run build` and commit it");
    process.exit(1);
  }
  console.log("dist/natterbox-scv-connector.js matches the source");
} else {
  writeFileSync(out, text);
  console.log(`wrote dist/natterbox-scv-connector.js (${text.length} bytes)`);
}
