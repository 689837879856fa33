/**
 * A streaming Parquet writer for the few shapes an export needs: strings, binary, int32, a
 * struct of those, and lists of strings. Every column is OPTIONAL (as DuckDB, pyarrow and
 * `datasets` write them) but values are never null. Pages are PLAIN and uncompressed, one or
 * more per column chunk, each holding whole rows; there are no dictionaries or statistics.
 * Memory holds one row group: at most `rowGroupSize` rows and about `maxRowGroupBytes`.
 *
 * Why not DuckDB's COPY: the rows are almost all image bytes that mlcap already holds in
 * memory. Appending them to DuckDB and copying them out again cost ~1.5 s for 2,000 images
 * (194 MB) on 2 cores; here they go to the file by reference, in row groups of `rowGroupSize`
 * rows, and memory holds one row group at a time.
 *
 * Format: https://parquet.apache.org/docs/file-format/ (thrift compact protocol for headers
 * and the footer, the RLE/bit-packed hybrid for repetition and definition levels).
 */
import {MlcapError} from '../lake/errors.js'
import type {ContentCheck} from './hashThread.js'

export type ParquetField =
  | {name: string; type: 'string' | 'binary' | 'int32'}
  | {name: string; type: 'struct'; fields: Array<{name: string; type: 'string' | 'binary' | 'int32'}>}
  | {name: string; type: 'list'; element: 'string'}

type LeafType = 'string' | 'binary' | 'int32'
/** A binary value the sink must verify as it writes it (see ParquetSink). */
export interface CheckedBytes {
  data: Uint8Array
  check: ContentCheck
}
type Value = string | Uint8Array | CheckedBytes | number
export type ParquetRow = Record<string, Value | string[] | Record<string, Value>>

/** Where the bytes go: an append-only sink that knows how much it has accepted (FileSink). */
export interface ParquetSink {
  readonly bytes: number
  /** Appends `chunk` (synchronously: see FileSink); with `check`, verifies the chunk hashes to it (FileSink does). */
  write(chunk: Uint8Array, check?: ContentCheck): void
}

export interface ParquetWriterOptions {
  /** Most rows per row group (the unit readers load at once). */
  rowGroupSize: number
  /** A row group also ends once its values reach this many bytes (default 64 MiB): what memory holds. */
  maxRowGroupBytes?: number
  /** Schema-level key-value metadata, e.g. {huggingface: '…'}. */
  keyValueMetadata?: Record<string, string>
  createdBy: string
  /**
   * Write the first leaf column's value as each row arrives, one page per row, instead of
   * holding it until the row group is written: for a first column of large values (hf's image
   * bytes) it means they are never held or copied, so the caller may reuse their memory once
   * `write` returns. The other columns are held as usual.
   */
  streamFirstColumn?: boolean
}

const MAX_ROW_GROUP_BYTES = 64 * 1024 * 1024
/** A new page starts after the row that takes the current one past this many bytes. */
const PAGE_BYTES = 1 << 20

// Parquet enums (parquet.thrift)
const TYPE = {int32: 1, byteArray: 6} as const
const REPETITION = {required: 0, optional: 1, repeated: 2} as const
const CONVERTED = {utf8: 0, list: 3} as const
const ENCODING = {plain: 0, rle: 3} as const
const PAGE_DATA = 0
const CODEC_UNCOMPRESSED = 0

/** One leaf column: where its values are in a row, and its levels. */
interface Leaf {
  path: string[]
  type: LeafType
  maxDef: number
  maxRep: number
  /** The leaf's values in one row (one for a scalar, any number for a list). */
  valuesOf(row: ParquetRow): Value[]
}

interface ChunkInfo {
  leaf: Leaf
  offset: number
  bytes: number
  values: number
}

interface RowGroupInfo {
  rows: number
  offset: number
  bytes: number
  chunks: ChunkInfo[]
}

export class ParquetWriter {
  private readonly leaves: Leaf[]
  private rows: ParquetRow[] = []
  private rowBytes = 0
  /** With streamFirstColumn: the first column's chunk in the row group being gathered, as written so far. */
  private streamed: ChunkInfo | undefined
  private readonly groups: RowGroupInfo[] = []
  private started = false
  private finished = false

  constructor(private readonly sink: ParquetSink, private readonly fields: ParquetField[], private readonly options: ParquetWriterOptions) {
    if (!Number.isSafeInteger(options.rowGroupSize) || options.rowGroupSize <= 0) {
      throw new MlcapError('PARQUET_OPTIONS', `parquet: rowGroupSize must be a positive integer, not ${options.rowGroupSize}`)
    }
    if (options.maxRowGroupBytes !== undefined && !(Number.isSafeInteger(options.maxRowGroupBytes) && options.maxRowGroupBytes > 0)) {
      throw new MlcapError('PARQUET_OPTIONS', `parquet: maxRowGroupBytes must be a positive integer, not ${options.maxRowGroupBytes}`)
    }
    this.leaves = fields.flatMap(leavesOf)
  }

  /**
   * Adds one row, or throws PARQUET_VALUE (and keeps nothing of it) for a missing or mistyped
   * value. The row's buffers are written by reference and must not change until the row group
   * is written, except those of a streamed first column (written before `write` returns).
   */
  async write(row: ParquetRow): Promise<void> {
    if (this.finished) throw new MlcapError('PARQUET_FINISHED', 'parquet: cannot write a row after finish')
    let bytes = 0
    for (const leaf of this.leaves) for (const value of leaf.valuesOf(row)) bytes += typeof value === 'number' ? 4 : typeof value === 'string' ? value.length : bytesOf(value).byteLength
    if (this.options.streamFirstColumn) {
      this.start()
      const leaf = this.leaves[0]
      this.streamed ??= {leaf, offset: this.sink.bytes, bytes: 0, values: 0}
      const page = encodePage(leaf, [row], 0)
      this.writePage(page)
      this.streamed.bytes += page.bytes
      this.streamed.values += page.values
    }
    this.rows.push(row)
    this.rowBytes += bytes
    if (this.rows.length >= this.options.rowGroupSize || this.rowBytes >= (this.options.maxRowGroupBytes ?? MAX_ROW_GROUP_BYTES)) this.flushRowGroup()
  }

  /** Writes the last row group and the footer. Does not close the sink. */
  async finish(): Promise<void> {
    if (this.finished) return
    this.flushRowGroup()
    this.start()
    this.finished = true
    const footer = this.footer()
    const tail = Buffer.alloc(8)
    tail.writeUInt32LE(footer.length, 0)
    tail.write('PAR1', 4, 'ascii')
    this.sink.write(footer)
    this.sink.write(tail)
  }

  private start(): void {
    if (this.started) return
    this.started = true
    this.sink.write(Buffer.from('PAR1', 'ascii'))
  }

  private flushRowGroup(): void {
    if (this.rows.length === 0) return
    this.start()
    const rows = this.rows
    const streamed = this.streamed
    this.rows = []
    this.rowBytes = 0
    this.streamed = undefined
    const group: RowGroupInfo = {rows: rows.length, offset: streamed?.offset ?? this.sink.bytes, bytes: streamed?.bytes ?? 0, chunks: streamed ? [streamed] : []}
    for (const leaf of streamed ? this.leaves.slice(1) : this.leaves) {
      const chunk: ChunkInfo = {leaf, offset: this.sink.bytes, bytes: 0, values: 0}
      let start = 0
      while (start < rows.length) {
        const page = encodePage(leaf, rows, start)
        this.writePage(page)
        chunk.bytes += page.bytes
        chunk.values += page.values
        start = page.end
      }
      group.bytes += chunk.bytes
      group.chunks.push(chunk)
    }
    this.groups.push(group)
  }

  private writePage(page: {parts: Array<Uint8Array | CheckedBytes>}): void {
    for (const part of page.parts) {
      if (part instanceof Uint8Array) this.sink.write(part)
      else this.sink.write(part.data, part.check)
    }
  }

  private footer(): Buffer {
    const t = new CompactWriter()
    t.begin()
    t.i32(1, 1) // version
    t.list(2, STRUCT, [{root: true, children: this.fields.length} as SchemaElement, ...this.fields.flatMap(schemaElements)], (element) => writeSchemaElement(t, element))
    t.i64(3, this.groups.reduce((total, group) => total + group.rows, 0))
    t.list(4, STRUCT, this.groups, (group, ordinal) => {
      t.begin()
      t.list(1, STRUCT, group.chunks, (chunk) => {
        t.begin()
        t.i64(2, chunk.offset) // file_offset: where the chunk starts
        t.struct(3, () => {
          t.i32(1, chunk.leaf.type === 'int32' ? TYPE.int32 : TYPE.byteArray)
          t.list(2, I32, [ENCODING.plain, ENCODING.rle], (encoding) => t.elementI32(encoding))
          t.list(3, BINARY, chunk.leaf.path, (part) => t.elementBinary(part))
          t.i32(4, CODEC_UNCOMPRESSED)
          t.i64(5, chunk.values)
          t.i64(6, chunk.bytes)
          t.i64(7, chunk.bytes)
          t.i64(9, chunk.offset) // data_page_offset: the first page
        })
        t.end()
      })
      t.i64(2, group.bytes)
      t.i64(3, group.rows)
      t.i64(5, group.offset)
      t.i64(6, group.bytes)
      t.i16(7, ordinal)
      t.end()
    })
    const metadata = Object.entries(this.options.keyValueMetadata ?? {})
    if (metadata.length > 0) {
      t.list(5, STRUCT, metadata, ([key, value]) => {
        t.begin()
        t.binary(1, key)
        t.binary(2, value)
        t.end()
      })
    }
    t.binary(6, this.options.createdBy)
    t.end()
    return t.toBuffer()
  }
}

function leavesOf(field: ParquetField): Leaf[] {
  if (field.type === 'struct') {
    return field.fields.map((child) => {
      const name = `${field.name}.${child.name}`
      return {
        path: [field.name, child.name], type: child.type, maxDef: 2, maxRep: 0,
        valuesOf: (row: ParquetRow) => [checkValue((row[field.name] as Record<string, Value>)?.[child.name], child.type, name)],
      }
    })
  }
  if (field.type === 'list') {
    return [{
      path: [field.name, 'list', 'element'], type: field.element, maxDef: 3, maxRep: 1,
      valuesOf: (row) => {
        const list = row[field.name]
        if (!Array.isArray(list) || list.length === 0) throw rowError(field.name, 'a non-empty array', list)
        return list.map((value) => checkValue(value, field.element, `${field.name}[]`))
      },
    }]
  }
  return [{path: [field.name], type: field.type, maxDef: 1, maxRep: 0, valuesOf: (row) => [checkValue(row[field.name], field.type, field.name)]}]
}

function isBinaryValue(value: unknown): boolean {
  if (value instanceof Uint8Array) return true
  return value !== null && typeof value === 'object' && (value as CheckedBytes).data instanceof Uint8Array && typeof (value as CheckedBytes).check?.sha256 === 'string'
}

function checkValue(value: unknown, type: LeafType, name: string): Value {
  if (type === 'string' ? typeof value === 'string' : type === 'binary' ? isBinaryValue(value) : Number.isInteger(value) && Math.abs(value as number) < 2 ** 31) {
    return value as Value
  }
  throw rowError(name, type === 'int32' ? 'a 32-bit integer' : type === 'binary' ? 'a Uint8Array or {data, check}' : 'a string', value)
}

function rowError(name: string, expected: string, value: unknown): MlcapError {
  return new MlcapError('PARQUET_VALUE', `parquet: column ${name} expected ${expected} (values are never null), not ${describeValue(value)}`)
}

/** A value in a message: short, whatever its size (a row may hold megabytes of image bytes). */
function describeValue(value: unknown): string {
  if (value === null || value === undefined) return String(value)
  if (value instanceof Uint8Array) return `${value.constructor.name} of ${value.byteLength} bytes`
  if (Array.isArray(value)) return `an array of ${value.length}`
  if (typeof value === 'object') return `an object with keys ${Object.keys(value).join(', ') || '(none)'}`
  const text = typeof value === 'string' ? JSON.stringify(value) : String(value)
  return text.length > 80 ? `${text.slice(0, 77)}...` : text
}

type SchemaElement = {root: true; children: number} | {name: string; repetition: number; type?: number; children?: number; converted?: number; logical?: 'string' | 'list'}

function schemaElements(field: ParquetField): SchemaElement[] {
  const leaf = (name: string, type: LeafType, repetition: number): SchemaElement => ({
    name, repetition, type: type === 'int32' ? TYPE.int32 : TYPE.byteArray, ...(type === 'string' ? {converted: CONVERTED.utf8, logical: 'string' as const} : {}),
  })
  if (field.type === 'struct') {
    return [{name: field.name, repetition: REPETITION.optional, children: field.fields.length}, ...field.fields.map((child) => leaf(child.name, child.type, REPETITION.optional))]
  }
  if (field.type === 'list') {
    return [
      {name: field.name, repetition: REPETITION.optional, children: 1, converted: CONVERTED.list, logical: 'list'},
      {name: 'list', repetition: REPETITION.repeated, children: 1},
      leaf('element', field.element, REPETITION.optional),
    ]
  }
  return [leaf(field.name, field.type, REPETITION.optional)]
}

function writeSchemaElement(t: CompactWriter, element: SchemaElement): void {
  t.begin()
  if ('root' in element) {
    t.binary(4, 'schema')
    t.i32(5, element.children)
    t.end()
    return
  }
  if (element.type !== undefined) t.i32(1, element.type)
  t.i32(3, element.repetition)
  t.binary(4, element.name)
  if (element.children !== undefined) t.i32(5, element.children)
  if (element.converted !== undefined) t.i32(6, element.converted)
  if (element.logical !== undefined) {
    // LogicalType is a union: field 1 StringType, field 3 ListType, each an empty struct
    t.struct(10, () => t.struct(element.logical === 'string' ? 1 : 3, () => undefined))
  }
  t.end()
}

/** The rows from `start` that fit one page (at least one row): header, levels and values, as buffers to write in order. */
function encodePage(leaf: Leaf, rows: ParquetRow[], start: number): {parts: Array<Uint8Array | CheckedBytes>; bytes: number; values: number; end: number} {
  const values: Value[] = []
  const repetition: number[] = []
  let valueBytes = 0
  let end = start
  while (end < rows.length && (end === start || valueBytes < PAGE_BYTES)) {
    const rowValues = leaf.valuesOf(rows[end])
    rowValues.forEach((value, i) => {
      values.push(value)
      repetition.push(i === 0 ? 0 : 1)
      valueBytes += leaf.type === 'int32' ? 4 : 4 + (typeof value === 'string' ? Buffer.byteLength(value) : bytesOf(value as Uint8Array | CheckedBytes).byteLength)
    })
    end++
  }
  const levels: Buffer[] = []
  if (leaf.maxRep > 0) levels.push(encodeLevels(repetition, leaf.maxRep))
  levels.push(encodeLevels(new Array<number>(values.length).fill(leaf.maxDef), leaf.maxDef))
  const data = encodePlain(leaf.type, values, valueBytes)
  const pageBytes = levels.reduce((total, level) => total + level.length, 0) + data.reduce((total, part) => total + bytesOf(part).byteLength, 0)
  if (pageBytes > 2 ** 31 - 1) throw new MlcapError('PARQUET_PAGE_TOO_LARGE', `parquet: one row of column ${leaf.path.join('.')} holds ${pageBytes} bytes; a page holds at most 2 GiB`)

  const t = new CompactWriter()
  t.begin()
  t.i32(1, PAGE_DATA)
  t.i32(2, pageBytes)
  t.i32(3, pageBytes)
  t.struct(5, () => {
    t.i32(1, values.length)
    t.i32(2, ENCODING.plain)
    t.i32(3, ENCODING.rle)
    t.i32(4, ENCODING.rle)
  })
  t.end()
  const header = t.toBuffer()
  return {parts: [header, ...levels, ...data], bytes: header.length + pageBytes, values: values.length, end}
}

const bytesOf = (value: Uint8Array | CheckedBytes): Uint8Array => (value instanceof Uint8Array ? value : value.data)

/** PLAIN values: int32 little-endian; byte arrays as a 4-byte length then the bytes (binary values by reference, not copied). */
function encodePlain(type: LeafType, values: Value[], totalBytes: number): Array<Uint8Array | CheckedBytes> {
  if (type === 'binary') {
    return values.flatMap((value) => {
      const length = Buffer.alloc(4)
      length.writeUInt32LE(bytesOf(value as Uint8Array | CheckedBytes).byteLength)
      return [length, value as Uint8Array | CheckedBytes]
    })
  }
  const out = Buffer.allocUnsafe(totalBytes)
  let at = 0
  for (const value of values) {
    if (type === 'int32') {
      at = out.writeInt32LE(value as number, at)
    } else {
      const written = out.write(value as string, at + 4, 'utf8')
      out.writeUInt32LE(written, at)
      at += 4 + written
    }
  }
  return [out]
}

/** Levels in the RLE/bit-packed hybrid, as runs of equal values, prefixed with their byte length (data page v1). */
function encodeLevels(levels: number[], maxLevel: number): Buffer {
  const width = Math.ceil(Math.log2(maxLevel + 1))
  const valueBytes = Math.ceil(width / 8)
  const bytes: number[] = []
  for (let i = 0; i < levels.length;) {
    let run = 1
    while (i + run < levels.length && levels[i + run] === levels[i]) run++
    pushVarint(bytes, run * 2) // header: run length << 1, low bit 0 = RLE run
    for (let b = 0; b < valueBytes; b++) bytes.push((levels[i] >> (8 * b)) & 0xff)
    i += run
  }
  const out = Buffer.alloc(4 + bytes.length)
  out.writeUInt32LE(bytes.length, 0)
  out.set(bytes, 4)
  return out
}

function pushVarint(bytes: number[], value: number | bigint): void {
  let rest = BigInt(value)
  do {
    const low = Number(rest & 0x7fn)
    rest >>= 7n
    bytes.push(rest > 0n ? low | 0x80 : low)
  } while (rest > 0n)
}

// Thrift compact protocol type ids
const I16 = 4
const I32 = 5
const I64 = 6
const BINARY = 8
const LIST = 9
const STRUCT = 12

/** Just enough of the thrift compact protocol to write Parquet headers and footers. */
class CompactWriter {
  private readonly bytes: number[] = []
  private readonly lastField: number[] = []

  begin(): void {
    this.lastField.push(0)
  }

  end(): void {
    this.bytes.push(0) // field stop
    this.lastField.pop()
  }

  i16(id: number, value: number): void {
    this.field(id, I16)
    this.zigzag(value)
  }

  i32(id: number, value: number): void {
    this.field(id, I32)
    this.zigzag(value)
  }

  i64(id: number, value: number): void {
    this.field(id, I64)
    this.zigzag(value)
  }

  binary(id: number, value: string): void {
    this.field(id, BINARY)
    this.elementBinary(value)
  }

  struct(id: number, body: () => void): void {
    this.field(id, STRUCT)
    this.begin()
    body()
    this.end()
  }

  list<T>(id: number, elementType: number, items: readonly T[], writeItem: (item: T, index: number) => void): void {
    this.field(id, LIST)
    if (items.length < 15) this.bytes.push((items.length << 4) | elementType)
    else {
      this.bytes.push(0xf0 | elementType)
      pushVarint(this.bytes, items.length)
    }
    items.forEach(writeItem)
  }

  elementI32(value: number): void {
    this.zigzag(value)
  }

  elementBinary(value: string): void {
    const data = Buffer.from(value, 'utf8')
    pushVarint(this.bytes, data.length)
    for (const byte of data) this.bytes.push(byte)
  }

  toBuffer(): Buffer {
    return Buffer.from(this.bytes)
  }

  private field(id: number, type: number): void {
    const delta = id - this.lastField[this.lastField.length - 1]
    if (delta > 0 && delta <= 15) this.bytes.push((delta << 4) | type)
    else {
      this.bytes.push(type)
      this.zigzag(id)
    }
    this.lastField[this.lastField.length - 1] = id
  }

  /** Zigzag varint of a safe integer (i16, i32 and i64 alike). */
  private zigzag(value: number): void {
    const n = BigInt(value)
    pushVarint(this.bytes, n >= 0n ? n << 1n : (-n << 1n) - 1n)
  }
}
