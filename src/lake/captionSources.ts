/**
 * Finding captions in the conventions users already have, as raw text exactly as found
 * (no trimming, no normalization: cleaning is silver's job, and bronze keeps the truth).
 *
 * - Sidecars: `a.txt` (or `a.jpg.txt`) beside `a.jpg`; the whole file is one caption.
 * - Hugging Face ImageFolder manifests: `metadata.jsonl` / `metadata.csv` with a
 *   `file_name` column and a `text` or `caption` column; other columns become attributes.
 *   `file_name` is relative to the manifest's folder and may name subfolders.
 * - COCO captions: any `.json` whose top level has `images` and `annotations`;
 *   `file_name` is relative to the JSON file's folder.
 *
 * Bad content never throws: every problem is yielded as a `RejectRecord` with a reason
 * code, and the rest of the file continues where that is possible.
 */
import {createReadStream, promises as fs} from 'node:fs'
import path from 'node:path'
import {invalidParameter} from './errors.js'
import type {RejectReason} from './rejectReasons.js'

export type CaptionSourceKind = 'sidecar' | 'jsonl' | 'csv' | 'coco'

export type CaptionRecord = {
  kind: 'caption'
  sourceKind: CaptionSourceKind
  /** Absolute path of the file the caption was read from. */
  sourceFile: string
  /** Where in the source: 'file', 'line 12', 'line 3, caption 2', 'annotation 345'. */
  locator: string
  /** Absolute real path of the image the caption belongs to. */
  imagePath: string
  /** The caption exactly as found. */
  text: string
  /** Other columns/fields of the row, or null if there are none. */
  attributes: Record<string, unknown> | null
}

export type RejectRecord = {
  kind: 'reject'
  sourceKind: CaptionSourceKind
  sourceFile: string
  /** Where in the source, or null when the whole file is refused. */
  locator: string | null
  /** The image concerned, when known. */
  imagePath: string | null
  reason: RejectReason
  message: string
}

export type ParseCaptionOptions = {
  /** Largest caption accepted, in UTF-8 bytes (default 64 KiB). */
  maxCaptionBytes?: number
}

export const DEFAULT_MAX_CAPTION_BYTES = 64 * 1024

/** Extensions tried, in this order, when looking for the image beside a sidecar. */
export const SIDECAR_IMAGE_EXTENSIONS = Object.freeze(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif', '.heic', '.heif'])

const CAPTION_COLUMNS = ['text', 'caption'] as const
const READ_CHUNK = 256 * 1024

/**
 * Whether `file` is a caption source, and which kind. Decided by name, except `.json`
 * files, whose top-level keys are scanned (streaming) for `images` and `annotations`.
 * Never throws: an unreadable `.json` is reported as not a caption source.
 */
export async function classifyCaptionFile(file: string): Promise<CaptionSourceKind | null> {
  const base = path.basename(file).toLowerCase()
  if (base === 'metadata.jsonl') return 'jsonl'
  if (base === 'metadata.csv') return 'csv'
  if (base.endsWith('.txt')) return 'sidecar'
  if (base.endsWith('.json')) {
    try {
      const keys = await topLevelKeys(file, ['images', 'annotations'])
      return keys.has('images') && keys.has('annotations') ? 'coco' : null
    } catch {
      return null // unreadable: the caller will meet the same error when it reads the file as an input
    }
  }
  return null
}

/**
 * Captions (and rejects) from one caption source. `kind` defaults to
 * `classifyCaptionFile(file)`; a file that is no caption source yields nothing.
 */
export async function* parseCaptionFile(
  file: string,
  opts: ParseCaptionOptions = {},
  kind?: CaptionSourceKind,
): AsyncGenerator<CaptionRecord | RejectRecord, void, undefined> {
  const maxCaptionBytes = opts.maxCaptionBytes ?? DEFAULT_MAX_CAPTION_BYTES
  if (!Number.isSafeInteger(maxCaptionBytes) || maxCaptionBytes <= 0) {
    throw invalidParameter('maxCaptionBytes', 'a positive integer', maxCaptionBytes)
  }
  const sourceKind = kind ?? (await classifyCaptionFile(file))
  if (sourceKind === null) return
  const sourceFile = path.resolve(file)
  const ctx: Context = {sourceKind, sourceFile, maxCaptionBytes, dirCache: new Map()}
  try {
    if (sourceKind === 'sidecar') yield* parseSidecar(ctx)
    else if (sourceKind === 'jsonl') yield* parseJsonl(ctx)
    else if (sourceKind === 'csv') yield* parseCsv(ctx)
    else yield* parseCoco(ctx)
  } catch (error) {
    // I/O failure while reading the source (permissions, vanished, EISDIR...): the file is refused.
    yield reject(ctx, null, null, ioReason(error), `ingest: cannot read caption file ${sourceFile}: ${errorCode(error)} (${errorText(error)}). Check that it exists and is readable, then re-run.`)
  }
}

// ---------------------------------------------------------------------------------------
// Shared helpers

type Context = {
  sourceKind: CaptionSourceKind
  sourceFile: string
  maxCaptionBytes: number
  /** Real paths of the folders manifest rows point into (bounded; see realDir). */
  dirCache: Map<string, Promise<string>>
}

type Out = CaptionRecord | RejectRecord

/** Rows whose images are resolved at once (file system calls overlap; order is kept). */
const ROW_WINDOW = 64
const DIR_CACHE_LIMIT = 4096

/** realpath of a folder, cached per caption file: manifests name few folders and many files. */
function realDir(ctx: Context, dir: string): Promise<string> {
  let cached = ctx.dirCache.get(dir)
  if (cached === undefined) {
    if (ctx.dirCache.size >= DIR_CACHE_LIMIT) ctx.dirCache.clear()
    cached = fs.realpath(dir)
    cached.catch(() => undefined) // awaited by every user; this only keeps a failure from being "unhandled" while cached
    ctx.dirCache.set(dir, cached)
  }
  return cached
}

function reject(ctx: Context, locator: string | null, imagePath: string | null, reason: RejectReason, message: string): RejectRecord {
  return {kind: 'reject', sourceKind: ctx.sourceKind, sourceFile: ctx.sourceFile, locator, imagePath, reason, message}
}

function errorCode(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  return typeof code === 'string' ? code : 'EUNKNOWN'
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

function ioReason(error: unknown): RejectReason {
  const code = errorCode(error)
  return code === 'ENOENT' || code === 'ENOTDIR' ? 'file_vanished' : 'unreadable'
}

function where(ctx: Context, locator: string | null): string {
  return locator === null ? ctx.sourceFile : `${ctx.sourceFile} ${locator}`
}

const utf8 = new TextDecoder('utf-8', {fatal: true, ignoreBOM: true})

/** Decode strict UTF-8; on failure return the byte offset of the first bad sequence. */
function decodeUtf8(bytes: Uint8Array): {text: string} | {badAt: number} {
  try {
    return {text: utf8.decode(bytes)}
  } catch {
    return {badAt: firstInvalidUtf8(bytes)}
  }
}

function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0
  while (i < b.length) {
    const c = b[i]
    let need = 0
    let min = 0
    if (c < 0x80) need = 0
    else if (c >= 0xc2 && c <= 0xdf) need = 1
    else if (c >= 0xe0 && c <= 0xef) (need = 2), (min = 0x800)
    else if (c >= 0xf0 && c <= 0xf4) (need = 3), (min = 0x10000)
    else return i
    let cp = need === 0 ? c : c & (0x3f >> need)
    for (let k = 1; k <= need; k++) {
      const d = b[i + k]
      if (d === undefined || (d & 0xc0) !== 0x80) return i
      cp = (cp << 6) | (d & 0x3f)
    }
    if (need > 0 && (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))) return i
    i += need + 1
  }
  return b.length
}

function invalidUtf8Message(ctx: Context, locator: string | null, what: string, badAt: number): string {
  return `ingest: ${what} in ${where(ctx, locator)} is not valid UTF-8 (first bad byte at offset ${badAt}); expected UTF-8 text. Re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8).`
}

function tooLargeMessage(ctx: Context, locator: string | null, bytes: number): string {
  return `ingest: caption in ${where(ctx, locator)} is ${bytes} bytes, larger than the limit of ${ctx.maxCaptionBytes} bytes; expected a caption, not a document. Shorten it, or raise the limit with --max-caption-bytes.`
}

/** A manifest's `file_name`, resolved inside the manifest's folder. */
async function resolveManifestImage(
  ctx: Context,
  manifestDirReal: string,
  locator: string,
  fileName: string,
): Promise<{imagePath: string} | RejectRecord> {
  const escapes = (): RejectRecord =>
    reject(
      ctx,
      locator,
      null,
      'manifest_path_escape',
      `ingest: ${where(ctx, locator)} names file ${JSON.stringify(fileName)}, which is outside the manifest's folder ${manifestDirReal}; expected a path relative to that folder, without '..' leaving it. Move the image under the folder and fix the path.`,
    )
  if (fileName === '' || fileName.includes('\0')) {
    return reject(ctx, locator, null, ctx.sourceKind === 'coco' ? 'malformed_coco' : ctx.sourceKind === 'csv' ? 'malformed_csv' : 'malformed_jsonl', `ingest: ${where(ctx, locator)} has file_name ${JSON.stringify(fileName)}; expected a relative image path. Fix the row.`)
  }
  if (path.isAbsolute(fileName) || path.win32.isAbsolute(fileName) || /^[A-Za-z]:/.test(fileName)) return escapes()
  const joined = path.resolve(manifestDirReal, fileName)
  if (!isWithin(manifestDirReal, joined) || joined === manifestDirReal) return escapes()
  let real: string
  try {
    const st = await fs.lstat(joined)
    if (!st.isSymbolicLink()) {
      // Fast path (one lstat per row): only the folders above may be links, and their real paths are cached.
      real = path.join(await realDir(ctx, path.dirname(joined)), path.basename(joined))
      if (!isWithin(manifestDirReal, real)) return escapes()
      if (!st.isFile()) {
        return reject(ctx, locator, real, 'manifest_missing_file', `ingest: ${where(ctx, locator)} names ${JSON.stringify(fileName)}, but ${real} is not a regular file; expected an image file. Fix the row.`)
      }
      return {imagePath: real}
    }
    real = await fs.realpath(joined)
  } catch (error) {
    const code = errorCode(error)
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') {
      return reject(
        ctx,
        locator,
        joined,
        'manifest_missing_file',
        `ingest: ${where(ctx, locator)} names file ${JSON.stringify(fileName)}, but ${joined} does not exist (${code}); expected an image beside the manifest. Add the image or remove the row.`,
      )
    }
    return reject(ctx, locator, joined, 'unreadable', `ingest: ${where(ctx, locator)} names ${joined}, which cannot be resolved: ${code} (${errorText(error)}). Check its permissions.`)
  }
  // A link inside the folder that leads outside it escapes too.
  if (!isWithin(manifestDirReal, real)) return escapes()
  try {
    const st = await fs.stat(real)
    if (!st.isFile()) {
      return reject(ctx, locator, real, 'manifest_missing_file', `ingest: ${where(ctx, locator)} names ${JSON.stringify(fileName)}, but ${real} is not a regular file; expected an image file. Fix the row.`)
    }
  } catch (error) {
    return reject(ctx, locator, real, ioReason(error) === 'file_vanished' ? 'manifest_missing_file' : 'unreadable', `ingest: ${where(ctx, locator)} names ${real}, which cannot be read: ${errorCode(error)}. Check that it exists and is readable.`)
  }
  return {imagePath: real}
}

function isWithin(parent: string, target: string): boolean {
  if (target === parent) return true
  const prefix = parent.endsWith(path.sep) ? parent : parent + path.sep
  return target.startsWith(prefix)
}

/**
 * One manifest row (JSONL object, CSV row): validate, resolve the image, and produce one
 * record per caption (a list-valued caption column gives several).
 */
async function rowRecords(
  ctx: Context,
  manifestDirReal: string,
  locator: string,
  row: Record<string, unknown>,
  malformed: RejectReason,
): Promise<Out[]> {
  const fileName = row.file_name
  if (typeof fileName !== 'string') {
    return [reject(ctx, locator, null, malformed, `ingest: ${where(ctx, locator)} has ${fileName === undefined ? 'no file_name' : `file_name of type ${Array.isArray(fileName) ? 'array' : typeof fileName}`}; expected a string naming the image relative to the manifest. Fix the row.`)]
  }
  const column = CAPTION_COLUMNS.find((c) => Object.prototype.hasOwnProperty.call(row, c))
  if (column === undefined) {
    return [reject(ctx, locator, null, malformed, `ingest: ${where(ctx, locator)} has no "text" or "caption" field (fields: ${Object.keys(row).join(', ')}); expected one of them to hold the caption. Rename the caption column.`)]
  }
  const value = row[column]
  const texts: string[] | null = typeof value === 'string' ? [value] : Array.isArray(value) && value.every((v) => typeof v === 'string') ? (value as string[]) : null
  if (texts === null) {
    return [reject(ctx, locator, null, malformed, `ingest: ${where(ctx, locator)} has "${column}" of type ${value === null ? 'null' : typeof value}; expected a string (or a list of strings). Fix the row.`)]
  }
  const resolved = await resolveManifestImage(ctx, manifestDirReal, locator, fileName)
  if ('kind' in resolved) return [resolved]
  const out: Out[] = []
  const attributes: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(row)) if (k !== 'file_name' && k !== column) attributes[k] = v
  const attrs = Object.keys(attributes).length > 0 ? attributes : null
  for (let i = 0; i < texts.length; i++) {
    const loc = texts.length > 1 || Array.isArray(value) ? `${locator}, caption ${i + 1}` : locator
    const bytes = Buffer.byteLength(texts[i], 'utf8')
    if (bytes > ctx.maxCaptionBytes) out.push(reject(ctx, loc, resolved.imagePath, 'caption_too_large', tooLargeMessage(ctx, loc, bytes)))
    else out.push({kind: 'caption', sourceKind: ctx.sourceKind, sourceFile: ctx.sourceFile, locator: loc, imagePath: resolved.imagePath, text: texts[i], attributes: attrs})
  }
  return out
}

/**
 * Keeps up to ROW_WINDOW rows in flight so their file system lookups overlap, and hands
 * the results back in row order. A failure that escapes a row becomes that row's reject.
 */
class RowWindow {
  private pending: Array<Promise<Out[]>> = []

  constructor(private readonly ctx: Context) {}

  add(locator: string, work: Promise<Out[]> | Out[]): boolean {
    const ctx = this.ctx
    this.pending.push(
      Promise.resolve(work).catch((error: unknown) => [
        reject(ctx, locator, null, 'unreadable', `ingest: ${where(ctx, locator)} could not be checked: ${errorCode(error)} (${errorText(error)}). Check the permissions of the folders it names.`),
      ]),
    )
    return this.pending.length >= ROW_WINDOW
  }

  async *drain(): AsyncGenerator<Out, void, undefined> {
    const pending = this.pending
    this.pending = []
    for (const p of pending) yield* await p
  }
}

// ---------------------------------------------------------------------------------------
// Sidecars

async function* parseSidecar(ctx: Context): AsyncGenerator<CaptionRecord | RejectRecord, void, undefined> {
  const file = ctx.sourceFile
  const images = await sidecarImages(file)
  const st = await fs.stat(file)
  if (images.length === 0) {
    const withoutTxt = file.slice(0, -'.txt'.length)
    yield reject(
      ctx,
      null,
      null,
      'caption_without_image',
      `ingest: caption sidecar ${file} has no image beside it; expected ${path.basename(withoutTxt)}.jpg (or .png, .webp, ... or ${path.basename(withoutTxt)} itself). Add the image, rename the sidecar to match it, or remove it.`,
    )
    return
  }
  const locator = 'file'
  if (st.size > ctx.maxCaptionBytes) {
    // Not read at all: the size alone refuses it.
    for (const image of images) yield reject(ctx, locator, image, 'caption_too_large', tooLargeMessage(ctx, locator, st.size))
    return
  }
  const bytes = await fs.readFile(file)
  if (bytes.length > ctx.maxCaptionBytes) {
    for (const image of images) yield reject(ctx, locator, image, 'caption_too_large', tooLargeMessage(ctx, locator, bytes.length))
    return
  }
  const decoded = decodeUtf8(bytes)
  if ('badAt' in decoded) {
    for (const image of images) yield reject(ctx, locator, image, 'caption_invalid_utf8', invalidUtf8Message(ctx, null, 'caption sidecar', decoded.badAt))
    return
  }
  for (const image of images) {
    yield {kind: 'caption', sourceKind: 'sidecar', sourceFile: file, locator, imagePath: image, text: decoded.text, attributes: null}
  }
}

/**
 * The paths a sidecar's image may have: `a.jpg.txt` → `a.jpg`; `a.txt` → `a.<ext>` for each
 * image extension, in lower and upper case. Ingest and watch pair sidecars by this one list.
 */
export function sidecarImageCandidates(sidecar: string): string[] {
  const withoutTxt = sidecar.slice(0, -'.txt'.length)
  const candidates: string[] = []
  if (path.extname(withoutTxt) !== '') candidates.push(withoutTxt)
  for (const ext of SIDECAR_IMAGE_EXTENSIONS) candidates.push(withoutTxt + ext, withoutTxt + ext.toUpperCase())
  return candidates
}

/** Real paths of the images a sidecar belongs to: the candidates (sidecarImageCandidates) that exist as files. */
async function sidecarImages(sidecar: string): Promise<string[]> {
  const found: string[] = []
  for (const candidate of sidecarImageCandidates(sidecar)) {
    try {
      const st = await fs.stat(candidate)
      if (!st.isFile()) continue
      const real = await fs.realpath(candidate)
      if (!found.includes(real)) found.push(real)
    } catch {
      // Not there (or not reachable): try the next extension.
    }
  }
  return found
}

// ---------------------------------------------------------------------------------------
// Line reading (bytes, so that invalid UTF-8 is detected per line)

type Line = {lineNo: number; bytes: Buffer | null; length: number}

/**
 * Lines of a file as raw bytes, streaming. A line longer than `maxLineBytes` is not kept
 * (bytes: null) but its length is still reported. Strips one trailing CR.
 */
async function* readLines(file: string, maxLineBytes: number): AsyncGenerator<Line, void, undefined> {
  let parts: Buffer[] = []
  let length = 0
  let lineNo = 1
  const stream = createReadStream(file, {highWaterMark: READ_CHUNK})
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      let start = 0
      for (;;) {
        const nl = chunk.indexOf(0x0a, start)
        const end = nl < 0 ? chunk.length : nl
        const piece = chunk.subarray(start, end)
        length += piece.length
        if (length <= maxLineBytes + 1) parts.push(piece)
        else parts = []
        if (nl < 0) break
        yield finishLine(lineNo, parts, length, maxLineBytes)
        lineNo++
        parts = []
        length = 0
        start = nl + 1
      }
    }
    if (length > 0) yield finishLine(lineNo, parts, length, maxLineBytes)
  } finally {
    stream.destroy()
  }
}

function finishLine(lineNo: number, parts: Buffer[], length: number, maxLineBytes: number): Line {
  if (length > maxLineBytes + 1) return {lineNo, bytes: null, length}
  let bytes = parts.length === 1 ? parts[0] : Buffer.concat(parts, length)
  if (bytes.length > 0 && bytes[bytes.length - 1] === 0x0d) bytes = bytes.subarray(0, bytes.length - 1)
  if (bytes.length > maxLineBytes) return {lineNo, bytes: null, length}
  return {lineNo, bytes, length: bytes.length}
}

/** Rows may carry attributes and escapes besides the caption: allow generous room. */
function maxRowBytes(maxCaptionBytes: number): number {
  return Math.max(1024 * 1024, maxCaptionBytes * 8 + 64 * 1024)
}

// ---------------------------------------------------------------------------------------
// JSONL (Hugging Face ImageFolder metadata.jsonl)

async function* parseJsonl(ctx: Context): AsyncGenerator<CaptionRecord | RejectRecord, void, undefined> {
  const dirReal = await fs.realpath(path.dirname(ctx.sourceFile))
  const limit = maxRowBytes(ctx.maxCaptionBytes)
  const window = new RowWindow(ctx)
  for await (const line of readLines(ctx.sourceFile, limit)) {
    if (window.add(`line ${line.lineNo}`, jsonlLine(ctx, dirReal, limit, line))) yield* window.drain()
  }
  yield* window.drain()
}

async function jsonlLine(ctx: Context, dirReal: string, limit: number, line: Line): Promise<Out[]> {
  {
    const locator = `line ${line.lineNo}`
    if (line.bytes === null) {
      return [reject(ctx, locator, null, 'caption_too_large', `ingest: ${where(ctx, locator)} is ${line.length} bytes, longer than the ${limit} bytes a manifest row may have (captions are limited to ${ctx.maxCaptionBytes} bytes). Shorten it, or raise the limit with --max-caption-bytes.`)]
    }
    let bytes = line.bytes
    if (line.lineNo === 1 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3)
    const decoded = decodeUtf8(bytes)
    if ('badAt' in decoded) return [reject(ctx, locator, null, 'caption_invalid_utf8', invalidUtf8Message(ctx, locator, 'line', decoded.badAt))]
    if (decoded.text.trim() === '') return []
    let row: unknown
    try {
      row = JSON.parse(decoded.text)
    } catch (error) {
      return [reject(ctx, locator, null, 'malformed_jsonl', `ingest: ${where(ctx, locator)} is not valid JSON (${errorText(error)}); expected one JSON object per line. Fix or remove the line.`)]
    }
    if (row === null || typeof row !== 'object' || Array.isArray(row)) {
      return [reject(ctx, locator, null, 'malformed_jsonl', `ingest: ${where(ctx, locator)} is a JSON ${row === null ? 'null' : Array.isArray(row) ? 'array' : typeof row}; expected an object with file_name and text. Fix or remove the line.`)]
    }
    return rowRecords(ctx, dirReal, locator, row as Record<string, unknown>, 'malformed_jsonl')
  }
}

// ---------------------------------------------------------------------------------------
// CSV (RFC 4180), streaming, at the byte level: the delimiters are ASCII, and UTF-8
// multi-byte sequences never contain ASCII bytes, so splitting bytes is safe; each field
// is then decoded as strict UTF-8.

export type CsvRecord = {
  /** Line on which the record starts (1-based). */
  line: number
  fields: Buffer[]
  /** Set when the record breaks RFC 4180; `fields` are then best effort. */
  error: string | null
}

const QUOTE = 0x22
const COMMA = 0x2c
const CR = 0x0d
const LF = 0x0a

const S = {FieldStart: 0, Unquoted: 1, Quoted: 2, QuoteInQuoted: 3, AfterCr: 4} as const

/**
 * Streaming RFC 4180 reader over byte chunks: quoted fields with `""` escapes and
 * embedded commas/newlines; CRLF, LF or CR line ends; no trailing newline needed.
 * Fields larger than `maxFieldBytes` are replaced by an error (memory stays bounded).
 */
export async function* readCsvRecords(chunks: AsyncIterable<Buffer>, maxFieldBytes: number): AsyncGenerator<CsvRecord, void, undefined> {
  let state: (typeof S)[keyof typeof S] = S.FieldStart
  let line = 1
  let recordLine = 1
  let fields: Buffer[] = []
  let parts: Buffer[] = []
  let fieldLength = 0
  let error: string | null = null
  let quoteLine = 1
  let recordOpen = false

  const addPart = (p: Buffer): void => {
    if (p.length === 0) return
    fieldLength += p.length
    if (fieldLength > maxFieldBytes) {
      if (error === null) error = `a field is longer than ${maxFieldBytes} bytes`
      parts = []
      return
    }
    parts.push(Buffer.from(p)) // copy: the chunk is reused by the stream
  }
  const endField = (): void => {
    fields.push(parts.length === 1 ? parts[0] : Buffer.concat(parts))
    parts = []
    fieldLength = 0
  }
  const endRecord = (): CsvRecord => {
    const rec = {line: recordLine, fields, error}
    fields = []
    error = null
    recordOpen = false
    return rec
  }

  for await (const chunk of chunks) {
    let segStart = 0
    let i = 0
    const n = chunk.length
    while (i < n) {
      const c = chunk[i]
      switch (state) {
        case S.AfterCr:
          state = S.FieldStart
          if (c === LF) {
            i++
            segStart = i
            continue
          }
        // falls through: a lone CR ended the record; this byte starts the next one
        case S.FieldStart:
          if (!recordOpen) {
            recordOpen = true
            recordLine = line
          }
          if (c === QUOTE) {
            state = S.Quoted
            quoteLine = line
            segStart = i + 1
          } else if (c === COMMA) {
            endField()
            segStart = i + 1
          } else if (c === LF || c === CR) {
            endField()
            yield endRecord()
            line++
            state = c === CR ? S.AfterCr : S.FieldStart
            segStart = i + 1
          } else {
            state = S.Unquoted
            segStart = i
          }
          break
        case S.Unquoted:
          if (c === COMMA) {
            addPart(chunk.subarray(segStart, i))
            endField()
            state = S.FieldStart
            segStart = i + 1
          } else if (c === LF || c === CR) {
            addPart(chunk.subarray(segStart, i))
            endField()
            yield endRecord()
            line++
            state = c === CR ? S.AfterCr : S.FieldStart
            segStart = i + 1
          } else if (c === QUOTE && error === null) {
            error = `a double quote appears inside an unquoted field (line ${line}); expected quotes only around whole fields, doubled inside them`
          }
          break
        case S.Quoted:
          if (c === QUOTE) {
            addPart(chunk.subarray(segStart, i))
            state = S.QuoteInQuoted
            segStart = i + 1
          } else if (c === LF) {
            line++ // line numbers count LFs inside quoted fields (CRLF counts once)
          }
          break
        case S.QuoteInQuoted:
          if (c === QUOTE) {
            addPart(chunk.subarray(i, i + 1))
            state = S.Quoted
            segStart = i + 1
          } else if (c === COMMA) {
            endField()
            state = S.FieldStart
            segStart = i + 1
          } else if (c === LF || c === CR) {
            endField()
            yield endRecord()
            line++
            state = c === CR ? S.AfterCr : S.FieldStart
            segStart = i + 1
          } else {
            if (error === null) error = `text follows a closing double quote (line ${line}); expected a comma or the end of the line after it`
            state = S.Unquoted
            segStart = i
          }
          break
      }
      i++
    }
    if (state === S.Unquoted || state === S.Quoted) addPart(chunk.subarray(segStart, n))
  }
  const last = state as number // (TypeScript loses track of assignments made inside the loop)
  if (last === S.Quoted) {
    if (error === null) error = `a quoted field opened on line ${quoteLine} is never closed`
    endField()
    yield endRecord()
  } else if (last === S.Unquoted || last === S.QuoteInQuoted || recordOpen) {
    endField()
    yield endRecord()
  }
}

async function* parseCsv(ctx: Context): AsyncGenerator<CaptionRecord | RejectRecord, void, undefined> {
  const dirReal = await fs.realpath(path.dirname(ctx.sourceFile))
  const limit = maxRowBytes(ctx.maxCaptionBytes)
  const stream = createReadStream(ctx.sourceFile, {highWaterMark: READ_CHUNK})
  try {
    const window = new RowWindow(ctx)
    let header: string[] | null = null
    let captionIndex = -1
    let fileIndex = -1
    for await (const rec of readCsvRecords(stream as AsyncIterable<Buffer>, limit)) {
      const locator = `line ${rec.line}`
      if (header === null) {
        if (rec.fields.length > 0 && rec.fields[0].length >= 3 && rec.fields[0][0] === 0xef && rec.fields[0][1] === 0xbb && rec.fields[0][2] === 0xbf) {
          rec.fields[0] = rec.fields[0].subarray(3)
        }
        const names = rec.fields.map((f) => decodeUtf8(f))
        const bad = names.findIndex((d) => 'badAt' in d)
        if (rec.error !== null || bad >= 0) {
          yield reject(ctx, locator, null, 'malformed_csv', `ingest: the header of ${ctx.sourceFile} cannot be read: ${rec.error ?? 'it is not valid UTF-8'}; expected a first row of column names. Fix the header.`)
          return
        }
        header = names.map((d) => ('text' in d ? d.text : ''))
        fileIndex = header.indexOf('file_name')
        captionIndex = header.indexOf('text') >= 0 ? header.indexOf('text') : header.indexOf('caption')
        if (fileIndex < 0 || captionIndex < 0) {
          yield reject(ctx, locator, null, 'malformed_csv', `ingest: the header of ${ctx.sourceFile} has columns ${JSON.stringify(header)}; expected "file_name" and "text" (or "caption"). Rename the columns.`)
          return
        }
        const duplicate = header.find((h, i) => header!.indexOf(h) !== i)
        if (duplicate !== undefined) {
          yield reject(ctx, locator, null, 'malformed_csv', `ingest: the header of ${ctx.sourceFile} names column ${JSON.stringify(duplicate)} twice; expected unique column names. Rename one of them.`)
          return
        }
        continue
      }
      if (rec.fields.length === 1 && rec.fields[0].length === 0 && rec.error === null) continue // blank line
      if (window.add(locator, csvRow(ctx, dirReal, header, locator, rec))) yield* window.drain()
    }
    yield* window.drain()
    if (header === null) {
      yield reject(ctx, null, null, 'malformed_csv', `ingest: ${ctx.sourceFile} is empty; expected a header row with "file_name" and "text" (or "caption"). Remove the file or fill it.`)
    }
  } finally {
    stream.destroy()
  }
}

function csvRow(ctx: Context, dirReal: string, header: string[], locator: string, rec: CsvRecord): Promise<Out[]> | Out[] {
  if (rec.error !== null) {
    return [reject(ctx, locator, null, rec.error.startsWith('a field is longer') ? 'caption_too_large' : 'malformed_csv', `ingest: ${where(ctx, locator)} is not valid CSV: ${rec.error}. Fix the row (RFC 4180).`)]
  }
  if (rec.fields.length !== header.length) {
    return [reject(ctx, locator, null, 'malformed_csv', `ingest: ${where(ctx, locator)} has ${rec.fields.length} fields; expected ${header.length} like the header (${header.join(',')}). Quote fields that contain commas or newlines.`)]
  }
  const row: Record<string, unknown> = {}
  for (let i = 0; i < header.length; i++) {
    const d = decodeUtf8(rec.fields[i])
    if ('badAt' in d) return [reject(ctx, locator, null, 'caption_invalid_utf8', invalidUtf8Message(ctx, locator, `column ${JSON.stringify(header[i])}`, d.badAt))]
    row[header[i]] = d.text
  }
  return rowRecords(ctx, dirReal, locator, row, 'malformed_csv')
}

// ---------------------------------------------------------------------------------------
// COCO captions

async function* parseCoco(ctx: Context): AsyncGenerator<CaptionRecord | RejectRecord, void, undefined> {
  const dirReal = await fs.realpath(path.dirname(ctx.sourceFile))
  const bytes = await fs.readFile(ctx.sourceFile)
  const decoded = decodeUtf8(bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? bytes.subarray(3) : bytes)
  if ('badAt' in decoded) {
    yield reject(ctx, null, null, 'caption_invalid_utf8', invalidUtf8Message(ctx, null, 'COCO captions file', decoded.badAt))
    return
  }
  let doc: unknown
  try {
    doc = JSON.parse(decoded.text)
  } catch (error) {
    yield reject(ctx, null, null, 'malformed_coco', `ingest: COCO captions file ${ctx.sourceFile} is not valid JSON (${errorText(error)}). Fix the file.`)
    return
  }
  const top = doc as {images?: unknown; annotations?: unknown} | null
  if (!top || typeof top !== 'object' || !Array.isArray(top.images) || !Array.isArray(top.annotations)) {
    yield reject(ctx, null, null, 'malformed_coco', `ingest: ${ctx.sourceFile} does not have top-level "images" and "annotations" arrays; expected the COCO captions layout. Fix the file.`)
    return
  }

  const fileNames = new Map<string, string>() // image id (as key) → file_name
  for (let i = 0; i < top.images.length; i++) {
    const image = top.images[i] as {id?: unknown; file_name?: unknown} | null
    const locator = `image ${i}`
    if (!image || typeof image !== 'object' || !isCocoId(image.id) || typeof image.file_name !== 'string') {
      yield reject(ctx, locator, null, 'malformed_coco', `ingest: ${where(ctx, locator)} (index in "images") is ${shortJson(image)}; expected {"id": number, "file_name": string}. Fix the entry.`)
      continue
    }
    fileNames.set(idKey(image.id), image.file_name)
  }

  const resolved = new Map<string, {imagePath: string} | RejectRecord>()
  for (let i = 0; i < top.annotations.length; i++) {
    const ann = top.annotations[i] as Record<string, unknown> | null
    const hasId = ann !== null && typeof ann === 'object' && isCocoId(ann.id)
    const locator = hasId ? `annotation ${String(ann!.id)}` : `annotation index ${i}`
    if (!ann || typeof ann !== 'object' || Array.isArray(ann) || !isCocoId(ann.image_id) || typeof ann.caption !== 'string') {
      yield reject(ctx, locator, null, 'malformed_coco', `ingest: ${where(ctx, locator)} is ${shortJson(ann)}; expected {"image_id": number, "caption": string, "id": number}. Fix the annotation.`)
      continue
    }
    const key = idKey(ann.image_id)
    const fileName = fileNames.get(key)
    if (fileName === undefined) {
      yield reject(ctx, locator, null, 'malformed_coco', `ingest: ${where(ctx, locator)} refers to image_id ${String(ann.image_id)}, which is not in "images". Add the image entry or remove the annotation.`)
      continue
    }
    let image = resolved.get(key)
    if (image === undefined) {
      image = await resolveManifestImage(ctx, dirReal, locator, fileName)
      resolved.set(key, image)
    }
    if ('kind' in image) {
      // Each annotation of a missing image is reported, so no caption silently disappears.
      yield {...image, locator}
      continue
    }
    const bytesLength = Buffer.byteLength(ann.caption, 'utf8')
    if (bytesLength > ctx.maxCaptionBytes) {
      yield reject(ctx, locator, image.imagePath, 'caption_too_large', tooLargeMessage(ctx, locator, bytesLength))
      continue
    }
    const attributes: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(ann)) if (k !== 'image_id' && k !== 'caption') attributes[k] = v
    yield {
      kind: 'caption',
      sourceKind: 'coco',
      sourceFile: ctx.sourceFile,
      locator,
      imagePath: image.imagePath,
      text: ann.caption,
      attributes: Object.keys(attributes).length > 0 ? attributes : null,
    }
  }
}

function isCocoId(v: unknown): v is number | string {
  return (typeof v === 'number' && Number.isFinite(v)) || (typeof v === 'string' && v !== '')
}

function idKey(v: number | string): string {
  return typeof v === 'number' ? `n${v}` : `s${v}`
}

function shortJson(v: unknown): string {
  let text: string
  try {
    text = JSON.stringify(v) ?? String(v)
  } catch {
    text = String(v)
  }
  return text.length > 120 ? `${text.slice(0, 117)}...` : text
}

/**
 * Streaming scan of a JSON document's top-level object keys; stops as soon as all
 * `wanted` keys are seen. Only tokenizes strings and brackets, never builds values.
 */
async function topLevelKeys(file: string, wanted: readonly string[]): Promise<Set<string>> {
  const found = new Set<string>()
  const stream = createReadStream(file, {highWaterMark: 64 * 1024})
  let depth = 0
  let inString = false
  let escaped = false
  let capturing = false
  let expectKey = false
  let key: number[] = []
  let started = false
  let bomBytes = 0
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      for (let i = 0; i < chunk.length; i++) {
        const c = chunk[i]
        if (inString) {
          // Keys are compared in their raw JSON spelling (escapes kept), so "im\"ages" is not "images".
          if (escaped) {
            escaped = false
            if (capturing && key.length < 64) key.push(c)
          } else if (c === 0x5c) {
            escaped = true
            if (capturing && key.length < 64) key.push(c)
          } else if (c === QUOTE) {
            inString = false
            if (capturing) {
              found.add(Buffer.from(key).toString('utf8'))
              if (wanted.every((w) => found.has(w))) return found
              capturing = false
            }
          } else if (capturing && key.length < 64) key.push(c)
          continue
        }
        if (bomBytes > 0) {
          bomBytes--
          continue
        }
        if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) continue
        if (!started) {
          if (c === 0xef) {
            bomBytes = 2 // UTF-8 byte order mark
            continue
          }
          started = true
          if (c !== 0x7b) return found // not an object at the top level
        }
        if (c === QUOTE) {
          inString = true
          capturing = depth === 1 && expectKey
          key = []
          expectKey = false
        } else if (c === 0x7b || c === 0x5b) {
          depth++
          expectKey = depth === 1
        } else if (c === 0x7d || c === 0x5d) {
          depth--
          if (depth <= 0) return found
        } else if (c === COMMA) {
          if (depth === 1) expectKey = true
        }
      }
    }
    return found
  } finally {
    stream.destroy()
  }
}
