/**
 * SHA-256 of export files computed on another core while they are written.
 *
 * Hashing a 200 MB export on the main thread costs ~115 ms, as much as writing it. Here a
 * worker thread follows each file as it grows: after every write the writer reports how many
 * bytes are on disk (`advance`), and the worker reads that range back from the page cache and
 * hashes it. The main thread copies nothing and waits only for the last range at `finish`.
 *
 * The same thread checks exported images against their content hash (`hashFile`) by
 * reading their lake object again.
 *
 * The worker is ~50 lines of plain JavaScript loaded from a data: URL with no execArgv, so it
 * starts in ~30 ms whether mlcap runs from dist/ or from source under tsx (a worker loading
 * a .ts file would register tsx again, ~150 ms).
 */
import {Worker} from 'node:worker_threads'
import {MlcapError} from '../lake/errors.js'

export interface FileHash {
  bytes: number
  sha256: string
}

const WORKER_SOURCE = String.raw`
import {parentPort} from 'node:worker_threads'
import {createHash} from 'node:crypto'
import {closeSync, openSync, readSync} from 'node:fs'

const files = new Map() // id -> {fd, hash, at}
const buffer = Buffer.allocUnsafe(1 << 20)

function readTo(file, end) {
  while (file.at < end) {
    const n = readSync(file.fd, buffer, 0, Math.min(buffer.length, end - file.at), file.at)
    if (n === 0) throw new Error('the file ends at byte ' + file.at + ', before byte ' + end + ' its writer reported')
    file.hash.update(buffer.subarray(0, n))
    file.at += n
  }
}

function hashFile(path) {
  const fd = openSync(path, 'r')
  try {
    const hash = createHash('sha256')
    let bytes = 0
    for (let n; (n = readSync(fd, buffer, 0, buffer.length, bytes)) > 0; bytes += n) hash.update(buffer.subarray(0, n))
    return {sha256: hash.digest('hex'), bytes}
  } finally {
    closeSync(fd)
  }
}

function drop(id) {
  const file = files.get(id)
  files.delete(id)
  if (file) closeSync(file.fd)
}

const failed = new Map() // id -> why following it failed, reported at finish

parentPort.on('message', (message) => {
  const {op, id} = message
  try {
    if (op === 'hashFile') parentPort.postMessage({id, ...hashFile(message.path)})
    else if (op === 'drop') {
      failed.delete(id)
      drop(id)
    } else if (failed.has(id)) {
      if (op === 'finish') {
        parentPort.postMessage({id, error: failed.get(id)})
        failed.delete(id)
      }
    } else if (op === 'follow') files.set(id, {fd: openSync(message.path, 'r'), hash: createHash('sha256'), at: 0})
    else if (op === 'advance') readTo(files.get(id), message.to)
    else if (op === 'finish') {
      const file = files.get(id)
      readTo(file, message.bytes)
      if (readSync(file.fd, buffer, 0, 1, file.at) !== 0) throw new Error('the file is longer than the ' + message.bytes + ' bytes its writer reported')
      drop(id)
      parentPort.postMessage({id, sha256: file.hash.digest('hex'), bytes: message.bytes})
    }
  } catch (error) {
    const why = String((error && error.message) || error)
    try {
      drop(id)
    } catch {}
    if (op === 'finish' || op === 'hashFile') parentPort.postMessage({id, error: why})
    else failed.set(id, why)
  }
})
`

interface Reply {
  id: number
  sha256?: string
  bytes?: number
  error?: string
}

/** One file the hash thread follows. Calls must follow the writes: advance after each, finish after the last. */
export interface FollowedFile {
  /** The first `bytesOnDisk` bytes of the file are written: hash them when the thread gets to it. */
  advance(bytesOnDisk: number): void
  /** The file is complete at `bytes` bytes: resolves with its size and SHA-256, rejects if the file is not that long. */
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
    worker.unref() // kept alive only while someone waits for a hash (see finish)
  }

  static start(): HashThread {
    return new HashThread(new Worker(new URL(`data:text/javascript,${encodeURIComponent(WORKER_SOURCE)}`), {execArgv: []}))
  }

  /** Starts following `path`, which must exist (just created, possibly still empty). */
  follow(path: string): FollowedFile {
    const id = this.nextId++
    this.post({op: 'follow', id, path})
    let done = false
    return {
      advance: (bytesOnDisk) => {
        if (!done) this.post({op: 'advance', id, to: bytesOnDisk})
      },
      finish: async (bytes) => {
        done = true
        const reply = await this.request(path, {op: 'finish', id, bytes})
        return {bytes: reply.bytes!, sha256: reply.sha256!}
      },
      drop: () => {
        if (done) return
        done = true
        this.post({op: 'drop', id})
      },
    }
  }

  /** Size and SHA-256 of a complete file, read and hashed on the thread. */
  async hashFile(path: string): Promise<FileHash> {
    const reply = await this.request(path, {op: 'hashFile', id: this.nextId++, path})
    return {bytes: reply.bytes!, sha256: reply.sha256!}
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
