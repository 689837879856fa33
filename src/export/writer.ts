/**
 * What every format writer implements, and the small file helpers they share.
 * A writer owns one staging folder: `add` is called once per sample in input order,
 * `finish` completes every file, `close` releases resources on every path (idempotent).
 * Writers never write the manifest and never publish: exporter.ts does both.
 */
import {createHash, type Hash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {mkdir, open, type FileHandle} from 'node:fs/promises'
import {dirname} from 'node:path'
import {MlcapError} from '../lake/errors.js'
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
  const sha256 = createHash('sha256').update(bytes).digest('hex')
  if (check && check.sha256 !== sha256) throw contentMismatch(check, sha256)
  let handle: FileHandle
  try {
    handle = await open(path, 'wx')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new MlcapError('EXPORT_DUPLICATE_FILE', `export: ${path} was already written by an earlier sample; expected each sample key and file name to be unique`, {
        hint: 'give every sample a distinct key', cause: error,
      })
    }
    throw error
  }
  try {
    await writeFully(handle, bytes)
  } finally {
    await handle.close()
  }
  hashes?.record(path, {bytes: bytes.byteLength, sha256})
}

/** Size and SHA-256 of a file on disk (for files a writer did not write itself, e.g. DuckDB's). */
export async function hashFile(path: string): Promise<FileHash> {
  const hash = createHash('sha256')
  let bytes = 0
  for await (const chunk of createReadStream(path, {highWaterMark: 1 << 20})) {
    hash.update(chunk as Buffer)
    bytes += (chunk as Buffer).length
  }
  return {bytes, sha256: hash.digest('hex')}
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

/** Bytes collected before a write: a tar shard of ~100 KB images costs one write every few samples, not several per sample. */
const BUFFER_BYTES = 1 << 20
/** Chunks per writev(2), well under IOV_MAX (1024). */
const MAX_CHUNKS = 256

/**
 * An append-only file that gathers chunks (tar headers, JSON lines, images) and writes them
 * with one writev(2) per MiB, so many small writes cost few system calls and images are not
 * copied. It hashes what it accepts as it goes, on the hash thread when `hashes` has one:
 * on close it records the file's size and SHA-256 (see FileHashes), and fails if a chunk
 * written with a ContentCheck (an image) did not hash to it. One batch is written behind while the next gathers; backpressure
 * is simply `await`. Chunks are referenced until written: callers must not modify a chunk
 * after passing it.
 */
export class FileSink {
  private pending: Uint8Array[] = []
  private pendingBytes = 0
  private inFlight: Promise<void> | undefined
  private closed = false
  /** Hashes in this thread, unless `hashes` has a hash thread following the file. */
  private readonly hash: Hash | undefined
  private readonly followed: FollowedFile | undefined
  /** Bytes accepted so far (buffered or on disk). */
  bytes = 0
  /** Bytes written to the file so far. */
  private onDisk = 0
  /** Checks of chunks gathered since the last batch was handed to the writer (for the hash thread). */
  private pendingChecks: RangeCheck[] = []

  private constructor(private readonly handle: FileHandle, readonly path: string, private readonly hashes?: FileHashes) {
    this.followed = hashes?.thread?.follow(path)
    if (!this.followed) this.hash = createHash('sha256')
  }

  static async create(path: string, hashes?: FileHashes): Promise<FileSink> {
    await ensureDir(dirname(path))
    return new FileSink(await open(path, 'wx'), path, hashes)
  }

  /** Appends `chunk`; with `check`, its bytes must hash to `check.sha256` (checked by close at the latest). */
  async write(chunk: Uint8Array | string, check?: ContentCheck): Promise<void> {
    if (this.closed) throw new MlcapError('EXPORT_SINK_CLOSED', `export: cannot write to ${this.path} after it was closed`)
    const data = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk
    if (check) {
      if (this.followed) this.pendingChecks.push({...check, start: this.bytes, end: this.bytes + data.byteLength})
      else {
        const actual = createHash('sha256').update(data).digest('hex')
        if (actual !== check.sha256) throw contentMismatch(check, actual)
      }
    }
    if (data.byteLength === 0) return
    this.hash?.update(data)
    this.bytes += data.byteLength
    this.pending.push(data)
    this.pendingBytes += data.byteLength
    if (this.pendingBytes >= BUFFER_BYTES || this.pending.length >= MAX_CHUNKS) await this.writeBehind()
  }

  /** Writes out everything accepted so far. */
  async flush(): Promise<void> {
    await this.writeBehind()
    await this.settle()
  }

  /** Flushes, closes and records the file's size and SHA-256; safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    try {
      await this.flush()
    } finally {
      await this.handle.close()
    }
    const hash = this.followed ? await this.followed.finish(this.bytes) : {bytes: this.bytes, sha256: this.hash!.digest('hex')}
    this.hashes?.record(this.path, hash)
  }

  /** Closes without flushing (after a failure; the file is discarded with the staging folder). */
  async discard(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.pending = []
    this.followed?.drop()
    try {
      await this.settle()
    } catch {
      // the export already failed; this write's error adds nothing to the one being reported
    } finally {
      await this.handle.close()
    }
  }

  /** Starts writing the gathered chunks once the previous batch is written, and gathers the next meanwhile. */
  private async writeBehind(): Promise<void> {
    await this.settle()
    if (this.pendingBytes === 0) return
    const batch = this.pending
    const batchBytes = this.pendingBytes
    const checks = this.pendingChecks
    this.pending = []
    this.pendingBytes = 0
    this.pendingChecks = []
    const writing = writevFully(this.handle, batch).then(() => {
      this.onDisk += batchBytes
      this.followed?.advance(this.onDisk, checks)
    })
    writing.catch(() => undefined) // awaited by the next settle(); never an unhandled rejection meanwhile
    this.inFlight = writing
  }

  private async settle(): Promise<void> {
    const writing = this.inFlight
    this.inFlight = undefined
    await writing
  }
}

/** writev until every byte is written (a short write resumes where it stopped). */
async function writevFully(handle: FileHandle, chunks: Uint8Array[]): Promise<void> {
  let rest = chunks
  while (rest.length > 0) {
    let {bytesWritten} = await handle.writev(rest)
    let i = 0
    while (i < rest.length && bytesWritten >= rest[i].byteLength) bytesWritten -= rest[i++].byteLength
    rest = rest.slice(i)
    if (bytesWritten > 0) rest[0] = rest[0].subarray(bytesWritten)
  }
}

/** One shard file name: 00000, 00001, … (wider past 99999, still sorting by number up to there). */
export function shardName(index: number): string {
  return String(index).padStart(5, '0')
}
