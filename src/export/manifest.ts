/**
 * `manifest.json`: what an export holds, written last. Every other file is listed with
 * its size and SHA-256, sorted by path (byte order), so `verifyExport` can prove a folder
 * is complete and unmodified. No timestamps: the same input and arguments give the same
 * bytes. Keys of `created_from` and `options` are sorted for the same reason.
 */
import {readFileSync} from 'node:fs'
import {lstat, readdir, readFile, writeFile} from 'node:fs/promises'
import {join, posix, relative, sep} from 'node:path'
import {MlcapError} from '../lake/errors.js'
import {countMismatches} from './manifestCounts.js'
import {checkManifestShape, DAMAGED_HINT, invalidManifest} from './manifestShape.js'
import {SPLITS, type Split} from './sample.js'
import {sha256OfFile} from '../lake/hashing.js'
import type {FileHashes} from './writer.js'

export const MANIFEST_FILE = 'manifest.json'

export interface ManifestFile {
  path: string
  bytes: number
  sha256: string
}

export interface SplitCounts {
  samples: number
  captions: number
}

export interface ExportCounts {
  samples: number
  captions: number
  splits: Record<Split, SplitCounts>
}

export interface ExportManifest {
  mlcap_version: string
  format: string
  options: Record<string, unknown>
  created_from: Record<string, unknown>
  counts: ExportCounts
  files: ManifestFile[]
}

/**
 * `unexpected` is a file, or a folder (its path ends in "/") holding no listed file, that
 * the manifest does not list; `duplicate` a path the manifest lists more than once; `count`
 * a count in the manifest that disagrees with the others or with its file list (the path
 * is manifest.json).
 */
export type VerifyProblem = 'missing' | 'size' | 'sha256' | 'unexpected' | 'duplicate' | 'count'

export interface VerifyIssue {
  path: string
  problem: VerifyProblem
  /** What exactly disagrees, for the kinds a path alone does not explain (duplicate, count). */
  detail?: string
}

export interface VerifyResult {
  ok: boolean
  problems: VerifyIssue[]
}

let version: string | undefined

/** mlcap's version from package.json (two levels up from both src/export and dist/export). */
export function mlcapVersion(): string {
  version ??= String((JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {version: unknown}).version)
  return version
}

export function emptyCounts(): ExportCounts {
  return {samples: 0, captions: 0, splits: Object.fromEntries(SPLITS.map((split) => [split, {samples: 0, captions: 0}])) as Record<Split, SplitCounts>}
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b))
}

/** JSON with object keys sorted at every level; throws on values JSON cannot hold. */
export function canonicalJson(value: unknown, indent = 2): string {
  return JSON.stringify(value, (_key, item: unknown) => {
    if (typeof item === 'bigint' || typeof item === 'function' || typeof item === 'symbol') {
      throw new TypeError(`a ${typeof item} cannot be written to JSON`)
    }
    if (typeof item === 'number' && !Number.isFinite(item)) throw new TypeError(`the number ${item} cannot be written to JSON`)
    if (item && typeof item === 'object' && !Array.isArray(item)) {
      return Object.fromEntries(Object.entries(item as Record<string, unknown>).sort(([a], [b]) => byteOrder(a, b)))
    }
    return item
  }, indent)
}

export async function sha256File(path: string): Promise<string> {
  return (await sha256OfFile(path)).sha256
}

/**
 * Every regular file under `dir` except the manifest, as `/`-separated relative paths, sorted.
 * Other entries (symlinks, sockets) are reported in `others`, and every folder in `folders`.
 */
async function walk(dir: string): Promise<{files: string[]; others: string[]; folders: string[]}> {
  const files: string[] = []
  const others: string[] = []
  const folders: string[] = []
  async function visit(current: string): Promise<void> {
    for (const entry of await readdir(current, {withFileTypes: true})) {
      const full = join(current, entry.name)
      const rel = relative(dir, full).split(sep).join('/')
      if (entry.isDirectory()) {
        folders.push(rel)
        await visit(full)
      } else if (entry.isFile()) {
        if (rel !== MANIFEST_FILE) files.push(rel)
      } else others.push(rel)
    }
  }
  await visit(dir)
  return {files: files.sort(byteOrder), others: others.sort(byteOrder), folders: folders.sort(byteOrder)}
}

/**
 * Lists and hashes every file of a finished export folder (the manifest excluded). A file
 * whose writer recorded its hash in `hashes` (with the size it has on disk) is not read again.
 */
export async function listExportFiles(dir: string, hashes?: FileHashes): Promise<ManifestFile[]> {
  const {files, others} = await walk(dir)
  if (others.length > 0) {
    throw new MlcapError('EXPORT_UNEXPECTED_ENTRY', `export: ${join(dir, others[0])} is not a regular file or folder; expected an export to contain only files`, {
      hint: 'this is a bug in the writer of this format',
    })
  }
  const listed: ManifestFile[] = []
  for (const path of files) {
    const full = join(dir, path)
    const bytes = (await lstat(full)).size
    const recorded = hashes?.get(full)
    listed.push({path, bytes, sha256: recorded !== undefined && recorded.bytes === bytes ? recorded.sha256 : await sha256File(full)})
  }
  return listed
}

export function renderManifest(manifest: ExportManifest): string {
  const ordered = {
    mlcap_version: manifest.mlcap_version,
    format: manifest.format,
    options: manifest.options,
    created_from: manifest.created_from,
    counts: manifest.counts,
    files: manifest.files.map((file) => ({path: file.path, bytes: file.bytes, sha256: file.sha256})),
  }
  // canonicalJson sorts keys everywhere; keep the top level and file entries in the documented order
  const body = Object.entries(ordered)
    .map(([key, value]) => `  ${JSON.stringify(key)}: ${key === 'files' ? renderFiles(manifest.files) : canonicalJson(value).replaceAll('\n', '\n  ')}`)
    .join(',\n')
  return `{\n${body}\n}\n`
}

function renderFiles(files: ManifestFile[]): string {
  if (files.length === 0) return '[]'
  return `[\n${files.map((file) => `    ${JSON.stringify({path: file.path, bytes: file.bytes, sha256: file.sha256})}`).join(',\n')}\n  ]`
}

export async function writeManifest(dir: string, manifest: ExportManifest): Promise<void> {
  await writeFile(join(dir, MANIFEST_FILE), renderManifest(manifest), {flag: 'wx'})
}

/**
 * Reads and checks the shape of `<dir>/manifest.json` (see manifestShape.ts); null when
 * there is none. It must be a regular file: a symlink could make verify trust a manifest
 * from outside the folder.
 */
export async function readManifest(dir: string): Promise<ExportManifest | null> {
  const path = join(dir, MANIFEST_FILE)
  let info
  try {
    info = await lstat(path)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw error
  }
  if (!info.isFile()) {
    throw invalidManifest(path, `it is ${info.isDirectory() ? 'a folder' : info.isSymbolicLink() ? 'a symbolic link' : 'not a regular file'}`, 'the JSON file mlcap wrote')
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'))
  } catch (error) {
    throw new MlcapError('EXPORT_MANIFEST_INVALID', `export: ${path} is not valid JSON (${(error as Error).message}); expected the manifest mlcap wrote`, {
      hint: DAMAGED_HINT, cause: error,
    })
  }
  return checkManifestShape(parsed, path)
}

/** The folder a relative path is in; "" for the export folder itself. */
function parentOf(path: string): string {
  return path.includes('/') ? posix.dirname(path) : ''
}

/** The folders that hold a listed file, at any depth, "" included. */
function listedFolders(paths: Iterable<string>): Set<string> {
  const folders = new Set([''])
  for (const path of paths) {
    for (let folder = parentOf(path); !folders.has(folder); folder = parentOf(folder)) folders.add(folder)
  }
  return folders
}

/**
 * Checks an export folder against its manifest: every listed file present with the
 * listed size and SHA-256, each listed once, no other file or folder, and counts that
 * agree with each other and with the files (manifestCounts.ts). A missing manifest is
 * reported as `{path: 'manifest.json', problem: 'missing'}`; a damaged one throws
 * EXPORT_MANIFEST_INVALID. Only files found by walking the folder are ever read.
 */
export async function verifyExport(dir: string): Promise<VerifyResult> {
  const manifest = await readManifest(dir)
  if (manifest === null) return {ok: false, problems: [{path: MANIFEST_FILE, problem: 'missing'}]}
  const problems: VerifyIssue[] = []
  const {files: present, others, folders} = await walk(dir)
  const presentSet = new Set(present)
  const listed = new Map<string, number>()
  for (const file of manifest.files) {
    const times = (listed.get(file.path) ?? 0) + 1
    listed.set(file.path, times)
    if (times > 1) continue // checked as its first entry lists it; reported below
    if (!presentSet.has(file.path)) {
      problems.push({path: file.path, problem: 'missing'})
      continue
    }
    const full = join(dir, file.path)
    if ((await lstat(full)).size !== file.bytes) problems.push({path: file.path, problem: 'size'})
    else if ((await sha256File(full)) !== file.sha256) problems.push({path: file.path, problem: 'sha256'})
  }
  for (const [path, times] of listed) if (times > 1) problems.push({path, problem: 'duplicate', detail: `listed ${times} times in ${MANIFEST_FILE}`})
  for (const path of [...present, ...others]) if (!listed.has(path)) problems.push({path, problem: 'unexpected'})
  // a folder no listed file is in (an empty one too); only the outermost, as deleting it removes the rest
  const expected = listedFolders(listed.keys())
  for (const folder of folders) {
    if (!expected.has(folder) && expected.has(parentOf(folder))) problems.push({path: `${folder}/`, problem: 'unexpected'})
  }
  for (const detail of countMismatches(manifest)) problems.push({path: MANIFEST_FILE, problem: 'count', detail})
  problems.sort((a, b) => byteOrder(a.path, b.path) || byteOrder(a.problem, b.problem) || byteOrder(a.detail ?? '', b.detail ?? ''))
  return {ok: problems.length === 0, problems}
}
