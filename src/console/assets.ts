import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createHash } from 'node:crypto';

/** One static file of the console, held in memory. */
export interface ConsoleAsset {
  body: Buffer;
  contentType: string;
  /** Strong validator for conditional requests. */
  etag: string;
}

const TYPES: Record<string, string> = { '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

/** The package root: the nearest folder above this module with a package.json (src/ or dist/src/ alike). */
function packageRoot(from: string): string {
  let dir = from;
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

/**
 * Loads the console's script and stylesheet from `src/console/assets/` of the package itself (issue 14: no CDN,
 * works offline). Read once at start; a missing file fails the start with its path named.
 */
export function loadConsoleAssets(root = packageRoot(import.meta.dirname)): Map<string, ConsoleAsset> {
  const out = new Map<string, ConsoleAsset>();
  for (const name of ['console.js', 'console.css']) {
    const file = join(root, 'src', 'console', 'assets', name);
    const body = readFileSync(file);
    out.set(name, { body, contentType: TYPES[name.slice(name.lastIndexOf('.'))]!, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` });
  }
  return out;
}
