/**
 * Streaming, deterministic listing of the files under ingest's inputs.
 *
 * - Depth-first, names sorted by code unit (not locale), so the order is the same on
 *   every machine. Memory is bounded by the largest single directory listing times the
 *   depth, never by the size of the tree.
 * - Symbolic links are followed only when their target is inside one of the inputs;
 *   a link to a folder that contains it is a cycle and is refused; each linked folder
 *   is walked at most once through links.
 * - Dotfiles and dot-folders are skipped (reported as `skipped`), unless the input
 *   itself was named explicitly.
 * - Problems with one entry become `reject` entries; the walk goes on.
 */
import {isUtf8} from 'node:buffer'
import {promises as fs, type Dirent, constants as fsConstants} from 'node:fs'
import path from 'node:path'
import {UsageError} from './errors.js'
import type {RejectReason} from './rejectReasons.js'

export type WalkFile = {
  kind: 'file'
  /** Absolute real path of the file (symbolic links resolved). */
  path: string
  /** Absolute real path of the input folder the file was found under (for a file input: its folder). */
  root: string
  /** Where the entry appears under `root`, with '/' separators (the link's own name for a linked file). */
  relPath: string
  size: number
  mtimeMs: number
}

export type WalkReject = {kind: 'reject'; path: string; root: string; reason: RejectReason; message: string}

export type WalkSkipped = {
  kind: 'skipped'
  path: string
  root: string
  /** hidden: a dotfile or dot-folder (not descended). already_walked: a second link to a folder already walked through a link. */
  why: 'hidden' | 'already_walked'
}

export type WalkEntry = WalkFile | WalkReject | WalkSkipped

export type WalkOptions = {
  /** Walk dotfiles and dot-folders too (default false). */
  includeHidden?: boolean
  /** How many entries of one folder are stat()ed at once (default 32). */
  statConcurrency?: number
}

type Root = {given: string; real: string; isDir: boolean}

/** What a directory entry is, as its listing says (no stat). */
const enum EntryType {
  Other = 0,
  File = 1,
  Dir = 2,
  Link = 3,
}

/**
 * One folder's entries, sorted by name: the names as text (as mlcap records them), their
 * types, and the bytes of the few names that are not UTF-8. Compact on purpose — a flat
 * folder of 20,000 images is held for its whole walk, and a Dirent with a Buffer name plus a
 * wrapper costs ~300 bytes of heap per entry against ~50 here.
 */
type Listing = {names: string[]; types: Uint8Array; notUtf8: Map<number, Buffer>}

/** A listing entry with its name as bytes (only kept for names that are not UTF-8) and as text. */
type Named = {name: string; type: EntryType; bytes: Buffer | undefined}

function entryType(dirent: Dirent<Buffer>): EntryType {
  if (dirent.isDirectory()) return EntryType.Dir
  if (dirent.isFile()) return EntryType.File
  if (dirent.isSymbolicLink()) return EntryType.Link
  return EntryType.Other
}

/**
 * Lists a folder with names as bytes (a name that is not UTF-8 would come back as text that
 * opens nothing), streaming the entries so no array of Dirents is ever held, and sorts them by
 * name (code units; equal texts — only possible with names that are not UTF-8 — by their bytes).
 */
async function listFolder(dirReal: string): Promise<Listing> {
  const names: string[] = []
  const types: EntryType[] = []
  const bytesOf = new Map<number, Buffer>()
  // 'buffer' works for opendir as for readdir (names come back as Buffers); @types/node only lists the text encodings.
  const dir = await fs.opendir(dirReal, {encoding: 'buffer' as BufferEncoding, bufferSize: 256})
  for await (const dirent of dir as unknown as AsyncIterable<Dirent<Buffer>>) {
    const raw = dirent.name
    if (!isUtf8(raw)) bytesOf.set(names.length, raw)
    names.push(raw.toString('utf8'))
    types.push(entryType(dirent))
  }
  const bytes = (i: number): Buffer => bytesOf.get(i) ?? Buffer.from(names[i], 'utf8')
  const order = Uint32Array.from(names.keys())
  order.sort((a, b) => compareNames(names[a], names[b]) || (bytesOf.size > 0 ? Buffer.compare(bytes(a), bytes(b)) : 0) || a - b)
  const listing: Listing = {names: new Array<string>(order.length), types: new Uint8Array(order.length), notUtf8: new Map()}
  for (let k = 0; k < order.length; k++) {
    const i = order[k]
    listing.names[k] = names[i]
    listing.types[k] = types[i]
    const raw = bytesOf.get(i)
    if (raw) listing.notUtf8.set(k, raw)
  }
  return listing
}

type Inspected =
  | {type: 'file'; path: string; size: number; mtimeMs: number}
  | {type: 'dir'; real: string; viaLink: boolean}
  | {type: 'reject'; path: string; reason: RejectReason; message: string}

function errorCode(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  return typeof code === 'string' ? code : 'EUNKNOWN'
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function isWithin(parent: string, target: string): boolean {
  if (target === parent) return true
  const prefix = parent.endsWith(path.sep) ? parent : parent + path.sep
  return target.startsWith(prefix)
}

function toPosix(rel: string): string {
  return path.sep === '/' ? rel : rel.split(path.sep).join('/')
}

/**
 * List every file under `roots` (folders or single files), as a stream.
 * Throws `UsageError` (before yielding anything) when an input does not exist.
 */
export async function* walkInputs(roots: readonly string[], opts: WalkOptions = {}): AsyncGenerator<WalkEntry, void, undefined> {
  const includeHidden = opts.includeHidden ?? false
  const concurrency = Math.max(1, Math.floor(opts.statConcurrency ?? 32))

  // Resolve every input first, so a mistyped path fails before anything is yielded.
  const resolved: Root[] = []
  const rootRejects: WalkReject[] = []
  for (const given of roots) {
    const abs = path.resolve(given)
    try {
      const real = await fs.realpath(abs)
      const st = await fs.stat(real)
      if (st.isDirectory()) resolved.push({given, real, isDir: true})
      else if (st.isFile()) resolved.push({given, real, isDir: false})
      else rootRejects.push({kind: 'reject', path: real, root: real, reason: 'not_a_regular_file', message: notRegularMessage(real)})
    } catch (error) {
      const code = errorCode(error)
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        throw new UsageError(
          'INPUT_NOT_FOUND',
          `ingest: input ${JSON.stringify(given)} does not exist (resolved to ${abs}); expected a file or folder. Check the path for typos.`,
        )
      }
      const reason: RejectReason = code === 'ELOOP' ? 'symlink_loop' : 'unreadable'
      rootRejects.push({kind: 'reject', path: abs, root: abs, reason, message: `ingest: cannot open input ${abs}: ${code} (${errorText(error)}). Check the path and its permissions.`})
    }
  }

  // Drop inputs that repeat or sit inside another folder input: their files are listed once, under the outer one.
  const order: Root[] = []
  for (const r of resolved) {
    if (order.some((o) => o.real === r.real)) continue
    if (resolved.some((o) => o.isDir && o.real !== r.real && isWithin(o.real, r.real))) continue
    order.push(r)
  }

  const inside = (target: string): boolean => order.some((r) => (r.isDir ? isWithin(r.real, target) : r.real === target))
  const rootsText = order.map((r) => r.real).join(', ')
  const linkedDirs = new Set<string>()

  yield* rootRejects

  for (const root of order) {
    if (!root.isDir) {
      const base = path.dirname(root.real)
      const inspected = await inspectFile(root.real, root.real)
      if (inspected.type === 'file') {
        yield {kind: 'file', path: inspected.path, root: base, relPath: path.basename(root.real), size: inspected.size, mtimeMs: inspected.mtimeMs}
      } else if (inspected.type === 'reject') {
        yield {kind: 'reject', path: inspected.path, root: base, reason: inspected.reason, message: inspected.message}
      }
      continue
    }
    yield* walkDir(root.real, root.real, '', [])
  }

  async function* walkDir(rootReal: string, dirReal: string, dirRel: string, ancestors: string[]): AsyncGenerator<WalkEntry, void, undefined> {
    let listing: Listing
    try {
      listing = await listFolder(dirReal)
    } catch (error) {
      yield {kind: 'reject', path: dirReal, root: rootReal, ...readFailure('folder', dirReal, error)}
      return
    }
    const chain = [...ancestors, dirReal]

    for (let start = 0; start < listing.names.length; start += concurrency) {
      const window: Named[] = []
      for (let k = start; k < Math.min(start + concurrency, listing.names.length); k++) {
        window.push({name: listing.names[k], type: listing.types[k], bytes: listing.notUtf8.get(k)})
      }
      // Start the stat()s of the whole window, consume them in order.
      const pending = window.map((entry) =>
        !includeHidden && entry.name.startsWith('.') ? Promise.resolve(null) : inspectEntry(dirReal, entry),
      )
      for (let i = 0; i < window.length; i++) {
        const entry = window[i]
        const entryPath = path.join(dirReal, entry.name)
        const rel = dirRel === '' ? entry.name : `${dirRel}/${entry.name}`
        const inspected = await pending[i]
        if (inspected === null) {
          yield {kind: 'skipped', path: entryPath, root: rootReal, why: 'hidden'}
          continue
        }
        if (inspected.type === 'file') {
          yield {kind: 'file', path: inspected.path, root: rootReal, relPath: toPosix(rel), size: inspected.size, mtimeMs: inspected.mtimeMs}
        } else if (inspected.type === 'reject') {
          yield {kind: 'reject', path: inspected.path, root: rootReal, reason: inspected.reason, message: inspected.message}
        } else if (!inspected.viaLink) {
          yield* walkDir(rootReal, inspected.real, rel, chain)
        } else if (chain.some((a) => isWithin(inspected.real, a))) {
          yield {
            kind: 'reject',
            path: entryPath,
            root: rootReal,
            reason: 'symlink_loop',
            message: `ingest: symbolic link ${entryPath} points to ${inspected.real}, a folder that contains the link itself (a cycle); it is not followed. Remove the link or point it elsewhere.`,
          }
        } else if (linkedDirs.has(inspected.real)) {
          yield {kind: 'skipped', path: entryPath, root: rootReal, why: 'already_walked'}
        } else {
          linkedDirs.add(inspected.real)
          yield* walkDir(rootReal, inspected.real, rel, chain)
        }
      }
    }
  }

  /** Never rejects: every failure becomes a `reject` result. */
  async function inspectEntry(dirReal: string, {name, type, bytes}: Named): Promise<Inspected> {
    const entryPath = path.join(dirReal, name)
    if (bytes) return {type: 'reject', path: entryPath, ...nameNotUtf8(dirReal, bytes, type === EntryType.Dir)}
    try {
      if (type === EntryType.Dir) return {type: 'dir', real: entryPath, viaLink: false}
      if (type === EntryType.File) return await inspectFile(entryPath, entryPath)
      if (type === EntryType.Link) return await inspectLink(entryPath)
      return {type: 'reject', path: entryPath, reason: 'not_a_regular_file', message: notRegularMessage(entryPath)}
    } catch (error) {
      return {type: 'reject', path: entryPath, ...readFailure('file', entryPath, error)}
    }
  }

  async function inspectLink(linkPath: string): Promise<Inspected> {
    let target: string
    try {
      target = await fs.realpath(linkPath)
    } catch (error) {
      const code = errorCode(error)
      if (code === 'ELOOP') {
        return {
          type: 'reject',
          path: linkPath,
          reason: 'symlink_loop',
          message: `ingest: symbolic link ${linkPath} never resolves: its chain of links loops (ELOOP). Remove the link or point it at a real file.`,
        }
      }
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        const pointsTo = await fs.readlink(linkPath).catch(() => '(unknown)')
        return {
          type: 'reject',
          path: linkPath,
          reason: 'symlink_broken',
          message: `ingest: symbolic link ${linkPath} points to ${JSON.stringify(pointsTo)}, which does not exist. Fix or remove the link.`,
        }
      }
      return {type: 'reject', path: linkPath, ...readFailure('link', linkPath, error)}
    }
    if (!inside(target)) {
      return {
        type: 'reject',
        path: linkPath,
        reason: 'symlink_outside_root',
        message: `ingest: symbolic link ${linkPath} points to ${target}, outside the inputs (${rootsText}); links are followed only inside them. Add the target's folder as an input, or copy the file in.`,
      }
    }
    const st = await fs.stat(target)
    if (st.isDirectory()) return {type: 'dir', real: target, viaLink: true}
    if (st.isFile()) return inspectFile(target, linkPath)
    return {type: 'reject', path: linkPath, reason: 'not_a_regular_file', message: notRegularMessage(linkPath)}
  }
}

/** stat + read permission of a regular file. `shownPath` is what messages name (the link, for linked files). */
async function inspectFile(realPath: string, shownPath: string): Promise<Inspected> {
  try {
    const st = await fs.stat(realPath)
    if (!st.isFile()) return {type: 'reject', path: shownPath, reason: 'not_a_regular_file', message: notRegularMessage(shownPath)}
    await fs.access(realPath, fsConstants.R_OK)
    return {type: 'file', path: realPath, size: st.size, mtimeMs: st.mtimeMs}
  } catch (error) {
    return {type: 'reject', path: shownPath, ...readFailure('file', shownPath, error)}
  }
}

/** A name's bytes for messages: UTF-8 sequences as text, other bytes as \\xNN. */
export function showNameBytes(name: Buffer): string {
  return name.toString('latin1').replace(/[\x80-\xff]+/g, (run) => {
    const bytes = Buffer.from(run, 'latin1')
    return isUtf8(bytes) ? bytes.toString('utf8') : [...bytes].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('')
  })
}

/**
 * The reject for an entry whose name is not valid UTF-8 (written on a system using another
 * encoding, e.g. Latin-1). mlcap records paths as text; such a name has no text that opens it.
 */
function nameNotUtf8(dir: string, name: Buffer, isFolder: boolean): {reason: RejectReason; message: string} {
  const what = isFolder ? 'folder' : 'file'
  return {
    reason: 'name_not_utf8',
    message: `ingest: the name of the ${what} "${showNameBytes(name)}" in ${dir} is not valid UTF-8 (probably another encoding, such as Latin-1), so it cannot be recorded as a path${isFolder ? '; nothing in it was read' : ''}. Rename it to UTF-8, e.g. convmv -f latin1 -t utf8 --notest -r ${JSON.stringify(dir)}, and ingest it again (a running watch picks the renamed file up by itself).`,
  }
}

function notRegularMessage(p: string): string {
  return `ingest: ${p} is a socket, FIFO or device, not a regular file; only regular files are read. Leave it out of the input.`
}

function readFailure(what: 'file' | 'folder' | 'link', p: string, error: unknown): {reason: RejectReason; message: string} {
  const code = errorCode(error)
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    return {
      reason: 'file_vanished',
      message: `ingest: ${what} ${p} disappeared while the input was being listed (${code}); it was moved or deleted meanwhile. Re-run ingest once the input is stable.`,
    }
  }
  if (code === 'ELOOP') {
    return {reason: 'symlink_loop', message: `ingest: ${what} ${p} cannot be resolved: a chain of symbolic links loops (ELOOP). Remove the link.`}
  }
  const need = what === 'folder' ? 'read and execute permission' : 'read permission'
  return {
    reason: 'unreadable',
    message: `ingest: cannot read ${what} ${p}: ${code} (${errorText(error)}); expected ${need}. Fix the permissions (chmod/chown) or leave it out of the input.`,
  }
}
