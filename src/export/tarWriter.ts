/**
 * A streaming, deterministic POSIX ustar writer (pax extended headers for what ustar
 * cannot hold). Every entry is a regular file with mode 0644, uid/gid 0, empty owner
 * names and mtime 0, in the order given; the archive ends with two zero blocks and is
 * padded to a 10240-byte record as GNU tar and Python's tarfile do. The same calls give
 * the same bytes.
 */
import type {ContentCheck} from './hashThread.js'
import {MlcapError} from '../lake/errors.js'

export const TAR_BLOCK = 512
export const TAR_RECORD = 10240

export interface ByteSink {
  /** Appends `chunk` (synchronously: see FileSink); with `check`, the sink verifies the chunk hashes to it (FileSink does). */
  write(chunk: Uint8Array, check?: ContentCheck): void
}

const MAX_OCTAL_SIZE = 8 ** 11 - 1 // what an 11-digit size field holds (8 GiB - 1)
const ZERO_BLOCK = Buffer.alloc(TAR_BLOCK)
/** Entries up to this size are written with their header and padding as one chunk. */
const SMALL_ENTRY_BYTES = 4096

function padding(size: number): number {
  return (TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0'
}

/** Splits a path into ustar `prefix` (≤155 bytes) and `name` (≤100 bytes) at a slash, or null. */
function splitUstarName(name: string): {prefix: string; name: string} | null {
  if (Buffer.byteLength(name) <= 100) return {prefix: '', name}
  for (let i = name.indexOf('/'); i !== -1; i = name.indexOf('/', i + 1)) {
    const prefix = name.slice(0, i)
    const rest = name.slice(i + 1)
    if (Buffer.byteLength(prefix) <= 155 && rest !== '' && Buffer.byteLength(rest) <= 100) return {prefix, name: rest}
  }
  return null
}

/** One pax record: "<length> <key>=<value>\n", where length counts itself. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`
  const bodyBytes = Buffer.byteLength(body)
  let length = bodyBytes + 1
  while (String(length).length + bodyBytes !== length) length = String(length).length + bodyBytes
  return `${length}${body}`
}

/** The fields every header shares (mode 0644, uid/gid 0, mtime 0, ustar magic), with spaces where the checksum goes. */
const HEADER_TEMPLATE = (() => {
  const block = Buffer.alloc(TAR_BLOCK)
  block.write(octal(0o644, 8), 100, 'ascii')
  block.write(octal(0, 8), 108, 'ascii') // uid
  block.write(octal(0, 8), 116, 'ascii') // gid
  block.write(octal(0, 12), 136, 'ascii') // mtime
  block.write('        ', 148, 'ascii') // checksum counts as spaces while summing
  block.write('ustar\0', 257, 'ascii')
  block.write('00', 263, 'ascii')
  // uname (265), gname (297) stay empty; devmajor/devminor as zeros like GNU tar
  block.write(octal(0, 8), 329, 'ascii')
  block.write(octal(0, 8), 337, 'ascii')
  return block
})()

/** The template's checksum (its checksum field counted as spaces); the fields header() fills are zeros in it. */
const TEMPLATE_SUM = HEADER_TEMPLATE.reduce((total, byte) => total + byte, 0)

function byteSum(block: Buffer, start: number, end: number): number {
  let sum = 0
  for (let i = start; i < end; i++) sum += block[i]
  return sum
}

/** One header block: the template with this entry's name, size, type and checksum (a copy: headers are written by reference). */
function header(name: string, prefix: string, size: number, type: '0' | 'x'): Buffer {
  const block = Buffer.allocUnsafe(TAR_BLOCK)
  HEADER_TEMPLATE.copy(block)
  const nameEnd = block.write(name, 0, 100, 'utf8')
  block.write(octal(size, 12), 124, 'latin1')
  block[156] = type.charCodeAt(0)
  const prefixEnd = prefix === '' ? 345 : 345 + block.write(prefix, 345, 155, 'utf8')
  // the checksum counts every byte: the template's, plus those of the fields written here
  const sum = TEMPLATE_SUM + byteSum(block, 0, nameEnd) + byteSum(block, 124, 136) + block[156] + byteSum(block, 345, prefixEnd)
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1')
  return block
}

function checkEntryName(name: string): void {
  // the common case, a sample's file name: one segment that is not . or ..
  if (name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0')) return
  const parts = name.split('/')
  if (name === '' || name.startsWith('/') || name.includes('\0') || parts.some((part) => part === '' || part === '.' || part === '..')) {
    throw new MlcapError('EXPORT_TAR_NAME', `export: tar entry name ${JSON.stringify(name)} is not a clean relative path; expected non-empty segments separated by "/" with no "." or ".."`, {
      hint: 'this is a bug in the caller: build entry names from sample keys',
    })
  }
}

/** The header blocks (ustar alone, or pax + ustar) written before an entry's data. */
function entryHeaders(name: string, size: number): Buffer[] {
  checkEntryName(name)
  const split = splitUstarName(name)
  const records: string[] = []
  if (split === null) records.push(paxRecord('path', name))
  if (size > MAX_OCTAL_SIZE) records.push(paxRecord('size', String(size)))
  if (records.length === 0 && split !== null) return [header(split.name, split.prefix, size, '0')]
  const pax = Buffer.from(records.join(''), 'utf8')
  const base = name.slice(name.lastIndexOf('/') + 1)
  const paxName = `PaxHeaders/${Buffer.from(base).subarray(0, 80).toString('utf8').replace(/\uFFFD+$/, '')}`
  const fallback = split ?? {prefix: '', name: paxName.replace('PaxHeaders/', '')}
  return [
    header(paxName, '', pax.length, 'x'),
    pax,
    ...(padding(pax.length) ? [ZERO_BLOCK.subarray(0, padding(pax.length))] : []),
    header(fallback.name, fallback.prefix, size > MAX_OCTAL_SIZE ? 0 : size, '0'),
  ]
}

export class TarWriter {
  private written = 0
  private finished = false

  constructor(private readonly sink: ByteSink) {}

  /** Bytes written to the sink so far. */
  get bytesWritten(): number {
    return this.written
  }

  /** Bytes one entry occupies in the archive (headers, data, padding): for shard budgeting. */
  static entryBytes(name: string, size: number): number {
    // one ustar header when the name fits it and the size fits its octal field (what entryHeaders gives then)
    if (size <= MAX_OCTAL_SIZE && name.length <= 100 && Buffer.byteLength(name) <= 100) return TAR_BLOCK + size + padding(size)
    return entryHeaders(name, size).reduce((total, block) => total + block.length, 0) + size + padding(size)
  }

  /** Bytes `finish` adds after the last entry of an archive of `bytesSoFar` bytes. */
  static trailerBytes(bytesSoFar: number): number {
    const end = bytesSoFar + 2 * TAR_BLOCK
    return 2 * TAR_BLOCK + ((TAR_RECORD - (end % TAR_RECORD)) % TAR_RECORD)
  }

  /** Adds a file entry; `check` is passed to the sink with the data (see ByteSink). */
  async addFile(name: string, data: Uint8Array, check?: ContentCheck): Promise<void> {
    if (this.finished) throw new MlcapError('EXPORT_TAR_FINISHED', `export: cannot add ${JSON.stringify(name)} to a tar archive that is already finished`)
    const headers = entryHeaders(name, data.length)
    const pad = padding(data.length)
    if (check === undefined && data.length <= SMALL_ENTRY_BYTES) {
      // a small entry (a sample's .json or .txt) in one write, not three
      this.put(Buffer.concat([...headers, data, ZERO_BLOCK.subarray(0, pad)]))
      return
    }
    for (const block of headers) this.put(block)
    this.put(data, check)
    if (pad) this.put(ZERO_BLOCK.subarray(0, pad))
  }

  /** Writes the end-of-archive marker and record padding. Does not close the sink. */
  async finish(): Promise<void> {
    if (this.finished) return
    this.finished = true
    this.put(Buffer.alloc(TarWriter.trailerBytes(this.written)))
  }

  private put(chunk: Uint8Array, check?: ContentCheck): void {
    if (chunk.length === 0) return
    this.sink.write(chunk, check)
    this.written += chunk.length
  }
}
