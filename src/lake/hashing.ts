import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'

/** SHA-256 of bytes or text, lowercase hex: the lake's content addresses and row keys. */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

/**
 * A row key from its parts, NUL-separated (null and undefined count as empty, as in
 * Array.join — keys already committed depend on that).
 */
export function keyOf(...parts: Array<string | null | undefined>): string {
  return sha256Hex(parts.join('\u0000'))
}

/** Size and SHA-256 of a file, read as a stream (1 MiB at a time). */
export async function sha256OfFile(path: string): Promise<{bytes: number; sha256: string}> {
  const hash = createHash('sha256')
  let bytes = 0
  for await (const chunk of createReadStream(path, {highWaterMark: 1 << 20})) {
    hash.update(chunk as Buffer)
    bytes += (chunk as Buffer).length
  }
  return {bytes, sha256: hash.digest('hex')}
}
