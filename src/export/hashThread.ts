/**
 * SHA-256 of export files, and checks of the images in them, computed on another core while
 * the files are written.
 *
 * Hashing a 200 MB export on the main thread costs ~115 ms, as much as writing it. Here a
 * worker thread follows each file as it grows: after every write the writer reports how many
 * bytes are on disk (`advance`), and the worker reads that range back from the page cache and
 * hashes it. In the same pass it hashes the byte ranges the writer asked it to check (each
 * image, against the SHA-256 its sample names), so what is verified is what is on disk, and
 * no image is read twice. The main thread copies nothing and waits only at `finish`.
 *
 * The worker is ~60 lines of plain JavaScript loaded from a data: URL with no execArgv, so it
 * starts in ~30 ms whether mlcap runs from dist/ or from source under tsx (a worker loading
 * a .ts file would register tsx again, ~150 ms).
 */
import {Worker} from 'node:worker_threads'
import {MlcapError} from '../lake/errors.js'
import {REPAIR_EITHER} from '../lake/objects.js'

export interface FileHash {
  bytes: number
  sha256: string
}

/** Bytes that must hash to `sha256`; `label` names them in the error when they do not (e.g. `the image of sample "k"`). */
export interface ContentCheck {
  sha256: string
  label: string
}

/** A ContentCheck placed in a file: bytes [start, end). */
export interface RangeCheck extends ContentCheck {
  start: number
  end: number
}

/** The error for bytes that do not hash to what their check expects. */
export function contentMismatch(check: ContentCheck, actual: string): MlcapError {
  return new MlcapError('EXPORT_HASH_MISMATCH', `export: ${check.label} hashes to ${actual} but the sample says sha256 ${check.sha256}`, {
    hint: `the lake object named by that sha256 (objects/<first 2 hex>/<sha256>) is damaged. ${REPAIR_EITHER}`,
  })
}

const WORKER_SOURCE = String.raw`
import {parentPort} from 'node:worker_threads'
import {createHash} from 'node:crypto'
import {closeSync, openSync, readSync} from 'node:fs'

const files = new Map() // id -> {fd, hash, at, checks: [{start, end, index, hash}], mismatches: [{index, actual}]}
const failed = new Map() // id -> why following it failed, reported at finish
const buffer = Buffer.allocUnsafe(1 << 20)

function readTo(file, end) {
  while (file.at < end) {
    const n = readSync(file.fd, buffer, 0, Math.min(buffer.length, end - file.at), file.at)
    if (n === 0) throw new Error('the file ends at byte ' + file.at + ', before byte ' + end + ' its writer reported')
    const chunk = buffer.subarray(0, n)
    file.hash.update(chunk)
    checkRanges(file, file.at, chunk)
    file.at += n
  }
}

/** Feeds the part of chunk (at file offset 'from') inside each pending range to that range's hash; completes ranges that end in it. */
function checkRanges(file, from, chunk) {
  const to = from + chunk.length
  while (file.checks.length > 0 && file.checks[0].start < to) {
    const check = file.checks[0]
    check.hash ??= createHash('sha256')
    check.hash.update(chunk.subarray(Math.max(check.start, from) - from, Math.min(check.end, to) - from))
    if (check.end > to) return
    file.checks.shift()
    const actual = check.hash.digest('hex')
    if (actual !== check.sha256) file.mismatches.push({index: check.index, actual})
  }
}

function drop(id) {
  const file = files.get(id)
  files.delete(id)
  if (file) closeSync(file.fd)
}

parentPort.on('message', (message) => {
  const {op, id} = message
  try {
    if (op === 'drop') {
      failed.delete(id)
      drop(id)
    } else if (failed.has(id)) {
      if (op === 'finish') {
        parentPort.postMessage({id, error: failed.get(id)})
        failed.delete(id)
      }
    } else if (op === 'follow') files.set(id, {fd: openSync(message.path, 'r'), hash: createHash('sha256'), at: 0, checks: [], mismatches: []})
    else if (op === 'advance') {
      const file = files.get(id)
      file.checks.push(...message.checks)
      readTo(file, message.to)
    } else if (op === 'finish') {
      const file = files.get(id)
      readTo(file, message.bytes)
      if (readSync(file.fd, buffer, 0, 1, file.at) !== 0) throw new Error('the file is longer than the ' + message.bytes + ' bytes its writer reported')
      if (file.checks.length > 0) throw new Error('a range to check ends past the end of the file')
      drop(id)
      parentPort.postMessage({id, sha256: file.hash.digest('hex'), bytes: message.bytes, mismatches: file.mismatches})
    }
  } catch (error) {
    const why = String((error && error.message) || error)
    try {
      drop(id)
    } catch {}
    if (op === 'finish') parentPort.postMessage({id, error: why})
    else failed.set(id, why)
  }
})
`

interface Reply {
  id: number
  sha256?: string
  bytes?: number
  mismatches?: Array<{index: number; actual: string}>
  error?: string
}

/** One file the hash thread follows. Calls must follow the writes: advance after each, finish after the last. */
export interface FollowedFile {
  /**
   * The first `bytesOnDisk` bytes of the file are written: hash them when the thread gets to
   * it, and check `checks` (ranges inside them, in file order, after those of earlier calls).
   */
  advance(bytesOnDisk: number, checks?: RangeCheck[]): void
  /**
   * The file is complete at `bytes` bytes: resolves with its size and SHA-256. Rejects with
   * EXPORT_HASH_MISMATCH for the first range that did not match its check, or
   * EXPORT_HASH_FAILED if the file could not be read or is not `bytes` long.
   */
  finish(bytes: number): Promise<FileHash>
  /** Stops following (the file is being discarded). */
  drop(): void
}

export class HashThread {
  private nextId = 0
  private readonly waiting = new Map<number, {path: string; resolve: (reply: Reply) => void; reject: (error: Error) => void}>()
  private failure: Error | undefined

  private constructor(private readonly worker: Worker) {
    worker.on('message', (reply: Reply) => this.settle(reply))
    worker.on('error', (error) => this.fail(error))
    worker.on('exit', (code) => this.fail(new Error(`the hash thread exited with code ${code}`)))
    worker.unref() // kept alive only while someone waits for a reply (see request)
  }

  static start(): HashThread {
    return new HashThread(new Worker(new URL(`data:text/javascript,${encodeURIComponent(WORKER_SOURCE)}`), {execArgv: []}))
  }

  /** Starts following `path`, which must exist (just created, possibly still empty). */
  follow(path: string): FollowedFile {
    const id = this.nextId++
    this.post({op: 'follow', id, path})
    const checks: ContentCheck[] = [] // by index, to name a mismatch
    let done = false
    return {
      advance: (bytesOnDisk, ranges = []) => {
        if (done) return
        const sent = ranges.map((range) => ({start: range.start, end: range.end, sha256: range.sha256, index: checks.push(range) - 1}))
        this.post({op: 'advance', id, to: bytesOnDisk, checks: sent})
      },
      finish: async (bytes) => {
        done = true
        const reply = await this.request(path, {op: 'finish', id, bytes})
        const [first] = reply.mismatches ?? []
        if (first) throw contentMismatch(checks[first.index], first.actual)
        return {bytes: reply.bytes!, sha256: reply.sha256!}
      },
      drop: () => {
        if (done) return
        done = true
        this.post({op: 'drop', id})
      },
    }
  }

  /** Stops the thread; files still followed are abandoned. */
  async close(): Promise<void> {
    this.failure ??= new Error('the hash thread was closed')
    await this.worker.terminate()
  }

  private request(path: string, message: {op: string; id: number} & Record<string, unknown>): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      if (this.failure) return reject(this.threadError(path, this.failure))
      this.waiting.set(message.id, {path, resolve, reject})
      this.worker.ref()
      this.post(message)
    })
  }

  private post(message: Record<string, unknown>): void {
    if (!this.failure) this.worker.postMessage(message)
  }

  private settle(reply: Reply): void {
    const waiting = this.waiting.get(reply.id)
    if (!waiting) return
    this.waiting.delete(reply.id)
    if (this.waiting.size === 0) this.worker.unref()
    if (reply.error !== undefined) waiting.reject(this.threadError(waiting.path, new Error(reply.error)))
    else waiting.resolve(reply)
  }

  private fail(error: Error): void {
    this.failure ??= error
    for (const [id, waiting] of this.waiting) {
      this.waiting.delete(id)
      waiting.reject(this.threadError(waiting.path, error))
    }
    this.worker.unref()
  }

  private threadError(path: string, cause: Error): MlcapError {
    return new MlcapError('EXPORT_HASH_FAILED', `export: could not hash ${path}: ${cause.message}`, {
      hint: 'check the disk the export is written to, then run the export again', cause,
    })
  }
}
