/**
 * What every format writer implements, and the small file helpers they share.
 * A writer owns one staging folder: `add` is called once per sample in input order,
 * `finish` completes every file, `close` releases resources on every path (idempotent).
 * Writers never write the manifest and never publish: exporter.ts does both.
 */
import {createHash, type Hash} from 'node:crypto'
import {closeSync, openSync, writevSync} from 'node:fs'
import {mkdir, open, type FileHandle} from 'node:fs/promises'
import {dirname} from 'node:path'
import {MlcapError} from '../lake/errors.js'
import {sha256Hex} from '../lake/hashing.js'
import {contentMismatch, type ContentCheck, type FileHash, type FollowedFile, type HashThread, type RangeCheck} from './hashThread.js'
import type {CaptionMode, ExportSample} from './sample.js'

export type {FileHash} from './hashThread.js'

export interface WriterOptions {
  /** The staging folder the writer fills (exists, empty). */
  dir: string
  captions: CaptionMode
  /** Most samples per shard (sharded formats). */
  shardSize: number
  /** Most bytes per shard, approximately (sharded formats); a single larger sample still gets its own shard. */
  maxShardBytes: number
  /** Written into format-level metadata where a format has some (COCO `info`). */
  mlcapVersion: string
  /** Where writers record the size and SHA-256 of each file they write, so the manifest need not read it back. */
  hashes?: FileHashes
  /** Check that each image's bytes hash to its sample's sha256 as they are written (imageCheck). */
  verifyImages: boolean
}

/**
 * Sizes and hashes recorded by the writers while writing, so that the manifest does not
 * read every output file back. A file not recorded here is hashed from disk; a recorded
 * size that does not match the file on disk is ignored the same way. With a `thread`,
 * FileSinks hash on another core (see hashThread.ts) instead of on the main thread.
 */
export class FileHashes {
  private readonly known = new Map<string, FileHash>()

  constructor(readonly thread?: HashThread) {}

  record(path: string, hash: FileHash): void {
    this.known.set(path, hash)
  }

  get(path: string): FileHash | undefined {
    return this.known.get(path)
  }
}

export interface FormatWriter {
  add(sample: ExportSample): Promise<void>
  finish(): Promise<void>
  close(): Promise<void>
}

export interface FormatDefinition {
  /** One line for `--help` and docs. */
  readonly description: string
  /** Whether `shardSize` / `maxShardBytes` mean anything for this format. */
  readonly sharded: boolean
  create(options: WriterOptions): FormatWriter
}

/**
 * Writes a new file (never replaces one: a repeated key fails instead of silently overwriting)
 * and records its size and SHA-256 in `hashes`. With `check` (a sample's image and its
 * sha256), the bytes are hashed once, here, and must match it (EXPORT_HASH_MISMATCH).
 */
export async function writeNewFile(path: string, data: Uint8Array | string, hashes?: FileHashes, check?: ContentCheck): Promise<void> {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data
  const sha256 = sha256Hex(bytes)
  if (check && check.sha256 !== sha256) throw contentMismatch(check, sha256)
  let handle: FileHandle
  try {
    handle = await open(path, 'wx')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw duplicateFile(path, error)
    throw error
  }
  try {
    await writeFully(handle, bytes).catch((error: unknown) => {
      throw writeFailed(path, error)
    })
  } finally {
    await handle.close()
  }
  hashes?.record(path, {bytes: bytes.byteLength, sha256})
}

/** A failed write, with what to do about the usual causes (a full disk, a quota, a file size limit). */
function writeFailed(path: string, cause: unknown): MlcapError {
  const code = (cause as NodeJS.ErrnoException)?.code
  const hint = code === 'ENOSPC' || code === 'EDQUOT'
    ? 'the disk (or your quota) is full: free some space, or pass --out on another disk'
    : code === 'EFBIG'
      ? 'the file is larger than this system or file system allows (ulimit -f, FAT32): lower --shard-size, or pass --out on another file system'
      : 'check the disk the export is written to, then run the export again'
  return new MlcapError('EXPORT_WRITE_FAILED', `export: could not write ${path}: ${(cause as Error)?.message ?? String(cause)}`, {hint, cause})
}

function duplicateFile(path: string, cause: unknown): MlcapError {
  return new MlcapError('EXPORT_DUPLICATE_FILE', `export: ${path} was already written by an earlier sample; expected each sample key and file name to be unique`, {
    hint: 'give every sample a distinct key', cause,
  })
}

async function writeFully(handle: FileHandle, data: Uint8Array): Promise<void> {
  let offset = 0
  while (offset < data.byteLength) {
    const {bytesWritten} = await handle.write(data, offset, data.byteLength - offset)
    offset += bytesWritten
  }
}

export async function ensureDir(path: string): Promise<void> {
  await mkdir(path, {recursive: true})
}

/** Small chunks are copied into a buffer of this size and written together. */
const BUFFER_BYTES = 1 << 20
/** Chunks at least this large are written straight from the caller's memory, not copied. */
const DIRECT_BYTES = 64 * 1024
/**
 * The hash thread is told about new bytes on disk once this many have accumulated (and at
 * close): one message per image cost ~15 ms per 1,000 images on the main thread.
 */
const REPORT_BYTES = 4 << 20

/**
 * An append-only file for many small chunks (tar headers, JSON lines) and some large ones
 * (images). Small chunks are copied into a 1 MiB buffer; a large chunk is written at once,
 * with the buffer in front of it, in one writev(2) from the caller's memory. Either way a
 * chunk is no longer referenced when `write` returns, so callers may reuse its memory.
 *
 * Writes are synchronous, and so is `write` (a promise per chunk cost ~15 ms per 2,000
 * samples). Measured on the export benchmark (2 cores), handing them to the thread pool
 * instead was no faster: the copy into the page cache then competed with the hash thread for
 * the other core, and every write cost a promise round trip.
 *
 * It hashes what it accepts, on the hash thread when `hashes` has one: on close it records
 * the file's size and SHA-256 (see FileHashes), and fails if a chunk written with a
 * ContentCheck (an image) did not hash to it.
 */
export class FileSink {
  private readonly buffer = Buffer.allocUnsafeSlow(BUFFER_BYTES)
  private buffered = 0
  private closed = false
  /** Hashes in this thread, unless `hashes` has a hash thread following the file. */
  private readonly hash: Hash | undefined
  private readonly followed: FollowedFile | undefined
  /** Bytes accepted so far (buffered or on disk). */
  bytes = 0
  /** Bytes written to the file so far. */
  private onDisk = 0
  /** Bytes on disk the hash thread was told about. */
  private reported = 0
  /** Checks of chunks not yet reported to the hash thread (they are, once on disk). */
  private pendingChecks: RangeCheck[] = []

  private constructor(private readonly fd: number, readonly path: string, private readonly hashes?: FileHashes) {
    this.followed = hashes?.thread?.follow(path)
    if (!this.followed) this.hash = createHash('sha256')
  }

  static async create(path: string, hashes?: FileHashes): Promise<FileSink> {
    await ensureDir(dirname(path))
    let fd: number
    try {
      fd = openSync(path, 'wx')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw duplicateFile(path, error)
      throw error
    }
    return new FileSink(fd, path, hashes)
  }

  /** Appends `chunk`; with `check`, its bytes must hash to `check.sha256` (checked by close at the latest). */
  write(chunk: Uint8Array | string, check?: ContentCheck): void {
    if (this.closed) throw new MlcapError('EXPORT_SINK_CLOSED', `export: cannot write to ${this.path} after it was closed`)
    const data = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk
    if (check) {
      if (this.followed) this.pendingChecks.push({...check, start: this.bytes, end: this.bytes + data.byteLength})
      else {
        const actual = sha256Hex(data)
        if (actual !== check.sha256) throw contentMismatch(check, actual)
      }
    }
    if (data.byteLength === 0) return
    this.hash?.update(data)
    this.bytes += data.byteLength
    if (data.byteLength >= DIRECT_BYTES) {
      this.writeOut([this.buffer.subarray(0, this.buffered), data])
    } else {
      if (this.buffered + data.byteLength > BUFFER_BYTES) this.writeOut([this.buffer.subarray(0, this.buffered)])
      this.buffer.set(data, this.buffered)
      this.buffered += data.byteLength
    }
  }

  /** Writes, closes and records the file's size and SHA-256; safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    try {
      this.writeOut([this.buffer.subarray(0, this.buffered)])
    } finally {
      closeSync(this.fd)
    }
    this.report()
    const hash = this.followed ? await this.followed.finish(this.bytes) : {bytes: this.bytes, sha256: this.hash!.digest('hex')}
    this.hashes?.record(this.path, hash)
  }

  /** Closes without writing what is buffered (after a failure; the file is discarded with the staging folder). */
  async discard(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.followed?.drop()
    closeSync(this.fd)
  }

  /** writev until every byte of `chunks` is on disk (a short write resumes where it stopped); empties the buffer. */
  private writeOut(chunks: Uint8Array[]): void {
    let rest = chunks.filter((chunk) => chunk.byteLength > 0)
    let total = 0
    while (rest.length > 0) {
      let written: number
      try {
        written = writevSync(this.fd, rest)
      } catch (error) {
        throw writeFailed(this.path, error)
      }
      total += written
      let i = 0
      while (i < rest.length && written >= rest[i].byteLength) written -= rest[i++].byteLength
      rest = rest.slice(i)
      if (written > 0) rest[0] = rest[0].subarray(written)
    }
    this.buffered = 0
    if (total === 0) return
    this.onDisk += total
    if (this.onDisk - this.reported >= REPORT_BYTES) this.report()
  }

  /** Tells the hash thread what is on disk, with the checks of the chunks that now are. */
  private report(): void {
    if (!this.followed || this.reported === this.onDisk) return
    this.reported = this.onDisk
    const checks = this.pendingChecks.filter((range) => range.end <= this.onDisk)
    if (checks.length > 0) this.pendingChecks = this.pendingChecks.filter((range) => range.end > this.onDisk)
    this.followed.advance(this.onDisk, checks)
  }
}

/** One shard file name: 00000, 00001, … (wider past 99999, still sorting by number up to there). */
export function shardName(index: number): string {
  return String(index).padStart(5, '0')
}
