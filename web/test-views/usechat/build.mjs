// Bundles the useChat test page with esbuild into the directory given (a test's tmp dir):
// index.html and the script at its root (the gateway's static_dir: its files are /static/*).
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2];
if (!out) {
  console.error('usage: node test-views/usechat/build.mjs OUTDIR');
  process.exit(2);
}
await mkdir(out, { recursive: true });
await build({
  entryPoints: [join(here, 'app.jsx')],
  outfile: join(out, 'usechat.js'),
  bundle: true,
  format: 'esm',
  jsx: 'automatic',
  target: ['es2022'],
  define: { 'process.env.NODE_ENV': '"production"' },
  minify: true,
  logLevel: 'warning',
});
await writeFile(
  join(out, 'index.html'),
  '<!doctype html><meta charset="utf-8"><title>useChat on tokenwire</title>' +
    '<div id="root"></div><script type="module" src="/static/usechat.js"></script>\n',
);
