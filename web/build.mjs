// Builds the demo page into ../src/tokenwire/static (shipped in the Python wheel).
import { copyFile, mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "src", "tokenwire", "static");

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await build({
  entryPoints: [join(here, "src", "app.js")],
  outfile: join(out, "app.js"),
  bundle: true,
  format: "esm",
  target: ["es2020"],
  minify: true,
  legalComments: "linked",
  logLevel: "warning",
});
for (const name of ["index.html", "style.css"]) {
  await copyFile(join(here, "page", name), join(out, name));
}
console.log(`built web assets into ${out}`);
