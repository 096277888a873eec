/**
 * The integrity digest of an installed software tree (PROTOCOL.md "Heartbeat": `integrity`;
 * RULES.md "Eligibility" 3). The agent reports it in every heartbeat and `xcarectl patch sign
 * --integrity` registers the expected value, so both sides MUST compute it with this function.
 * Dependency-free (node: built-ins only) because the agent imports it.
 *
 * Definition (stable across runs, machines and file systems):
 *
 *   digest = "sha256:" + hex(sha256(L1 + L2 + ... + Ln))
 *
 * with one line per entry under `dir`, recursively, sorted by the UTF-8 bytes of the relative path:
 *   - regular file:   `<relative posix path>\0<hex sha256 of the file's bytes>\n`
 *   - symbolic link:  `<relative posix path>\0link:<link target as stored>\n` (never followed)
 * Directories are implicit (an empty directory does not change the digest); other entries
 * (sockets, FIFOs, devices) are skipped. Relative paths use `/` and have no leading `./`.
 * Ownership, modes and timestamps are not part of the digest. `dir` itself may be a symlink.
 * An empty tree gives sha256 of the empty string; a missing `dir` rejects (ENOENT).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';

interface TreeEntry {
  /** Relative posix path. */
  rel: string;
  abs: string;
  kind: 'file' | 'link';
}

export async function computeTreeDigest(dir: string): Promise<string> {
  const entries = sortEntries(await listTree(dir));
  const outer = createHash('sha256');
  for (const entry of entries) {
    const value = entry.kind === 'link' ? `link:${await readlink(entry.abs)}` : await hashFile(entry.abs);
    outer.update(`${entry.rel}\0${value}\n`, 'utf8');
  }
  return `sha256:${outer.digest('hex')}`;
}

/**
 * A cheap fingerprint of the tree's shape (paths, kinds, sizes, mtimes, inodes, link targets) without
 * reading file contents. The agent recomputes the digest only when this changes; an install that
 * rewrites a file keeps neither its mtime nor, usually, its inode.
 */
export async function computeTreeFingerprint(dir: string): Promise<string> {
  const entries = sortEntries(await listTree(dir));
  const hash = createHash('sha256');
  for (const entry of entries) {
    const st = await lstat(entry.abs);
    const extra = entry.kind === 'link' ? await readlink(entry.abs) : '';
    hash.update(`${entry.rel}\0${entry.kind}\0${st.size}\0${st.mtimeMs}\0${st.ctimeMs}\0${st.ino}\0${extra}\n`, 'utf8');
  }
  return hash.digest('hex');
}

/** Sort by the UTF-8 bytes of the path, not by locale or UTF-16 code units. */
function sortEntries(entries: TreeEntry[]): TreeEntry[] {
  return entries
    .map((e) => ({ e, key: Buffer.from(e.rel, 'utf8') }))
    .sort((a, b) => Buffer.compare(a.key, b.key))
    .map(({ e }) => e);
}

async function listTree(root: string): Promise<TreeEntry[]> {
  const out: TreeEntry[] = [];
  const walk = async (abs: string, rel: string): Promise<void> => {
    const children = await readdir(abs, { withFileTypes: true });
    for (const child of children) {
      const childAbs = join(abs, child.name);
      const childRel = rel === '' ? child.name : `${rel}/${child.name}`;
      if (child.isSymbolicLink()) out.push({ rel: childRel, abs: childAbs, kind: 'link' });
      else if (child.isDirectory()) await walk(childAbs, childRel);
      else if (child.isFile()) out.push({ rel: childRel, abs: childAbs, kind: 'file' });
    }
  };
  await walk(root, '');
  return out;
}

function hashFile(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    const stream = createReadStream(file);
    stream.on('error', reject);
    stream.on('data', (chunk) => hash.update(chunk));
    stream.on('end', () => resolve(hash.digest('hex')));
  });
}
