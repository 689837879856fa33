/**
 * `manifest.json`: what an export holds, written last. Every other file is listed with
 * its size and SHA-256, sorted by path (byte order), so `verifyExport` can prove a folder
 * is complete and unmodified. No timestamps: the same input and arguments give the same
 * bytes. Keys of `created_from` and `options` are sorted for the same reason.
 */
import {readFileSync} from 'node:fs'
import {lstat, readdir, readFile, writeFile} from 'node:fs/promises'
import {join, relative, sep} from 'node:path'
import {MlcapError} from '../lake/errors.js'
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

export type VerifyProblem = 'missing' | 'size' | 'sha256' | 'unexpected'

export interface VerifyResult {
  ok: boolean
  problems: Array<{path: string; problem: VerifyProblem}>
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

/** Every regular file under `dir` except the manifest, as `/`-separated relative paths, sorted. Other entries (symlinks, sockets) are reported in `others`. */
async function walk(dir: string): Promise<{files: string[]; others: string[]}> {
  const files: string[] = []
  const others: string[] = []
  async function visit(current: string): Promise<void> {
    for (const entry of await readdir(current, {withFileTypes: true})) {
      const full = join(current, entry.name)
      const rel = relative(dir, full).split(sep).join('/')
      if (entry.isDirectory()) await visit(full)
      else if (entry.isFile()) {
        if (rel !== MANIFEST_FILE) files.push(rel)
      } else others.push(rel)
    }
  }
  await visit(dir)
  return {files: files.sort(byteOrder), others: others.sort(byteOrder)}
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

/** Reads and checks the shape of `<dir>/manifest.json`; null when there is none. */
export async function readManifest(dir: string): Promise<ExportManifest | null> {
  const path = join(dir, MANIFEST_FILE)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw error
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (error) {
    throw new MlcapError('EXPORT_MANIFEST_INVALID', `export: ${path} is not valid JSON (${(error as Error).message}); expected the manifest mlcap wrote`, {
      hint: 'the export was modified or damaged: export it again', cause: error,
    })
  }
  const files = (parsed as {files?: unknown})?.files
  const wellFormed = Array.isArray(files) && files.every((file) =>
    file && typeof file.path === 'string' && Number.isInteger(file.bytes) && typeof file.sha256 === 'string')
  if (!wellFormed || typeof (parsed as {mlcap_version?: unknown}).mlcap_version !== 'string') {
    throw new MlcapError('EXPORT_MANIFEST_INVALID', `export: ${path} has no mlcap_version or no well-formed files list; expected {mlcap_version, files: [{path, bytes, sha256}]}`, {
      hint: 'the export was modified or damaged: export it again',
    })
  }
  return parsed as ExportManifest
}

/**
 * Checks an export folder against its manifest: every listed file present with the
 * listed size and SHA-256, and no other file. A missing manifest is reported as
 * `{path: 'manifest.json', problem: 'missing'}`; a damaged one throws.
 */
export async function verifyExport(dir: string): Promise<VerifyResult> {
  const manifest = await readManifest(dir)
  if (manifest === null) return {ok: false, problems: [{path: MANIFEST_FILE, problem: 'missing'}]}
  const problems: VerifyResult['problems'] = []
  const {files: present, others} = await walk(dir)
  const presentSet = new Set(present)
  const listed = new Set<string>()
  for (const file of manifest.files) {
    listed.add(file.path)
    if (!presentSet.has(file.path)) {
      problems.push({path: file.path, problem: 'missing'})
      continue
    }
    const full = join(dir, file.path)
    if ((await lstat(full)).size !== file.bytes) problems.push({path: file.path, problem: 'size'})
    else if ((await sha256File(full)) !== file.sha256) problems.push({path: file.path, problem: 'sha256'})
  }
  for (const path of [...present, ...others]) if (!listed.has(path)) problems.push({path, problem: 'unexpected'})
  problems.sort((a, b) => byteOrder(a.path, b.path) || byteOrder(a.problem, b.problem))
  return {ok: problems.length === 0, problems}
}
