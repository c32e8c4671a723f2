// Shared vectors: op logs produced by the Python implementation, applied here, must give
// byte-identical canonical message JSON.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { applyOps } from "../src/model.js";

const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "tests", "vectors");
const names = existsSync(dir)
  ? readdirSync(dir)
      .filter((f) => f.endsWith(".ops.jsonl"))
      .map((f) => f.slice(0, -".ops.jsonl".length))
      .sort()
  : [];

if (names.length === 0) {
  test("shared vectors", { skip: `no vectors in ${dir} yet` }, () => {});
}

for (const name of names) {
  test(`vector ${name}: JS message JSON is byte-identical to Python's`, () => {
    const ops = readFileSync(join(dir, `${name}.ops.jsonl`), "utf8")
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => JSON.parse(line));
    const expected = readFileSync(join(dir, `${name}.message.json`));
    const actual = Buffer.from(JSON.stringify(applyOps(ops)), "utf8");
    assert.equal(actual.toString("utf8"), expected.toString("utf8").replace(/\n$/, ""));
    // Byte-for-byte, beyond string equality (encoding of every character).
    assert.ok(actual.equals(Buffer.from(expected.toString("utf8").replace(/\n$/, ""), "utf8")));
  });
}
