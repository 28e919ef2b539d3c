// The installed package holds exactly what it needs (package.json's `files`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.resolve('relink-redis/package.json')));

function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [relative(root, path)];
  });
}

test('the tarball installs exactly the package files', { skip: !root.includes('node_modules') && 'runs against the installed tarball' }, () => {
  assert.deepEqual(files(root).sort(), [
    'README.md',
    'engine.d.ts',
    'engine.js',
    'index.d.ts',
    'index.js',
    'lib/client.js',
    'lib/engine.js',
    'lib/errors.js',
    'lib/link.js',
    'lib/options.js',
    'lib/pubsub.js',
    'package.json',
    'pkg/relink_wasm.d.ts',
    'pkg/relink_wasm.js',
    'pkg/relink_wasm_bg.wasm',
  ]);
});
