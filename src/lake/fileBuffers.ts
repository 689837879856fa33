import {open} from 'node:fs/promises'

/** As `readFile`: larger files are refused (ERR_FS_FILE_TOO_LARGE), one read call could not take them. */
const MAX_FILE_BYTES = 2 ** 31 - 1

/** Buffers kept for reuse are at most this large; a larger file gets a buffer of its own, freed after it. */
const MAX_KEPT_BYTES = 32 << 20

/**
 * Whole files read into buffers that are reused from one file to the next. Ingest reads every
 * photo once: with `readFile`, each was a fresh allocation the size of the file, which glibc
 * maps from the kernel and unmaps again — for 922 MB of photos about 225,000 page faults of
 * zeroed memory, plus the garbage collections that external memory sets off. A buffer per
 * file in flight, kept, avoids that.
 *
 * `read` gives the bytes and a `release` to call once nothing uses them any more; until then
 * the buffer is not handed to another file.
 */
export class FileBuffers {
  private readonly free: Buffer[] = []

  /** The bytes of `file` (errors as `readFile`'s: ENOENT, EACCES, EISDIR, …). */
  async read(file: string): Promise<{bytes: Buffer; release: () => void}> {
    const handle = await open(file, 'r')
    let buffer: Buffer | undefined
    try {
      const {size} = await handle.stat()
      if (size >= MAX_FILE_BYTES) {
        throw Object.assign(new RangeError(`File size (${size}) is greater than 2 GiB`), {code: 'ERR_FS_FILE_TOO_LARGE'})
      }
      // One byte more than the size: a read that stops short of it has reached the end, so a
      // file read in one call takes one read.
      buffer = this.take(size + 1)
      let at = 0
      for (;;) {
        if (at === buffer.length) buffer = this.grow(buffer) // the file grew while being read
        const {bytesRead} = await handle.read(buffer, at, buffer.length - at, at)
        at += bytesRead
        if (bytesRead === 0 || at < buffer.length) break // a short read of a regular file is its end
      }
      const owned = buffer
      buffer = undefined
      return {bytes: owned.subarray(0, at), release: () => this.give(owned)}
    } finally {
      if (buffer) this.give(buffer)
      await handle.close()
    }
  }

  private take(bytes: number): Buffer {
    const index = this.free.findIndex((b) => b.length >= bytes)
    if (index >= 0) return this.free.splice(index, 1)[0]!
    // Round up so that files a little larger than the last do not each need a new buffer.
    return Buffer.allocUnsafeSlow(Math.max(1 << 20, Math.ceil(bytes / (1 << 20)) * (1 << 20)))
  }

  private grow(buffer: Buffer): Buffer {
    const larger = Buffer.allocUnsafeSlow(buffer.length * 2)
    buffer.copy(larger)
    this.give(buffer)
    return larger
  }

  private give(buffer: Buffer): void {
    if (buffer.length <= MAX_KEPT_BYTES) this.free.push(buffer)
  }
}
