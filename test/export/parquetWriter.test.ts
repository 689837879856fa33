import {test} from 'node:test'
import assert from 'node:assert/strict'
import {join} from 'node:path'
import {DuckDBInstance} from '@duckdb/node-api'
import {asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects} from 'hyparquet'
import {ParquetWriter, type ParquetField, type ParquetRow} from '../../src/export/parquetWriter.js'
import {FileSink} from '../../src/export/writer.js'
import {mulberry32} from '../helpers/random.js'
import {tempDir} from './fixtures.js'

const FIELDS: ParquetField[] = [
  {name: 'image', type: 'struct', fields: [{name: 'bytes', type: 'binary'}, {name: 'path', type: 'string'}]},
  {name: 'tags', type: 'list', element: 'string'},
  {name: 'text', type: 'string'},
  {name: 'n', type: 'int32'},
]

/** Rows that exercise every encoding path: values past a 1 MiB page, lists of 1-20 items, empty and non-ASCII strings, negative ints. */
function makeRows(count: number): ParquetRow[] {
  const random = mulberry32(7)
  return Array.from({length: count}, (_, i) => {
    const size = i % 9 === 4 ? 700_000 + i : Math.floor(random() * 3000)
    const bytes = Buffer.alloc(size)
    for (let b = 0; b < size; b += 97) bytes[b] = Math.floor(random() * 256)
    return {
      image: {bytes, path: `img-${i}.jpg`},
      tags: Array.from({length: 1 + (i % 20)}, (_, k) => (k % 5 === 3 ? '' : `tag ${i}.${k} ✓ ${'x'.repeat(k)}`)),
      text: i % 7 === 0 ? '' : `caption ${i}: café "quoted", 🍰`,
      n: i % 2 === 0 ? i * 1000 : -(2 ** 31) + i,
    }
  })
}

async function writeFile(path: string, rows: ParquetRow[], rowGroupSize: number): Promise<void> {
  const sink = await FileSink.create(path)
  const writer = new ParquetWriter(sink, FIELDS, {rowGroupSize, keyValueMetadata: {note: 'hello', other: '{"a": 1}'}, createdBy: 'mlcap version test'})
  for (const row of rows) await writer.write(row)
  await writer.finish()
  await sink.close()
}

test('ParquetWriter output reads back exactly in hyparquet and in DuckDB: structs, lists, strings, int32, many row groups and pages', async (t) => {
  const rows = makeRows(53)
  const path = join(await tempDir(t), 'rows.parquet')
  await writeFile(path, rows, 3) // 18 row groups: the footer's lists take thrift's long list header

  const file = await asyncBufferFromFile(path)
  const metadata = await parquetMetadataAsync(file)
  assert.equal(metadata.num_rows, 53n)
  assert.equal(metadata.row_groups.length, 18)
  assert.deepEqual(metadata.key_value_metadata, [{key: 'note', value: 'hello'}, {key: 'other', value: '{"a": 1}'}])
  assert.equal(metadata.created_by, 'mlcap version test')
  const bigGroup = metadata.row_groups[1] // holds row 4, 700 KB, with rows 3 and 5: the image column spans two pages
  assert.ok(bigGroup.columns[0].meta_data!.total_compressed_size > 700_000n)
  const read = await parquetReadObjects({file, metadata, utf8: false})
  assert.equal(read.length, rows.length)
  for (const [i, row] of read.entries()) {
    const expected = rows[i] as {image: {bytes: Buffer; path: string}; tags: string[]; text: string; n: number}
    const image = row.image as {bytes: Uint8Array; path: string}
    assert.ok(Buffer.from(image.bytes).equals(expected.image.bytes), `row ${i} image bytes`)
    assert.deepEqual({path: image.path, tags: row.tags, text: row.text, n: row.n}, {path: expected.image.path, tags: expected.tags, text: expected.text, n: expected.n}, `row ${i}`)
  }

  const instance = await DuckDBInstance.create(':memory:')
  t.after(() => instance.closeSync())
  const connection = await instance.connect()
  const schema = (await connection.runAndReadAll(`SELECT name, type, repetition_type, converted_type FROM parquet_schema('${path}')`)).getRowObjectsJson()
  assert.deepEqual(schema.map((column) => [column.name, column.type, column.repetition_type, column.converted_type]), [
    ['schema', null, null, null],
    ['image', null, 'OPTIONAL', null],
    ['bytes', 'BYTE_ARRAY', 'OPTIONAL', null],
    ['path', 'BYTE_ARRAY', 'OPTIONAL', 'UTF8'],
    ['tags', null, 'OPTIONAL', 'LIST'],
    ['list', null, 'REPEATED', null],
    ['element', 'BYTE_ARRAY', 'OPTIONAL', 'UTF8'],
    ['text', 'BYTE_ARRAY', 'OPTIONAL', 'UTF8'],
    ['n', 'INT32', 'OPTIONAL', null],
  ])
  const fromDuck = (await connection.runAndReadAll(
    `SELECT sha256(image.bytes) AS image_sha, image.path AS path, to_json(tags) AS tags, text, n FROM read_parquet('${path}') ORDER BY file_row_number`,
  )).getRowObjectsJson()
  const {createHash} = await import('node:crypto')
  assert.deepEqual(fromDuck, rows.map((row) => {
    const r = row as {image: {bytes: Buffer; path: string}; tags: string[]; text: string; n: number}
    return {image_sha: createHash('sha256').update(r.image.bytes).digest('hex'), path: r.image.path, tags: JSON.stringify(r.tags), text: r.text, n: r.n}
  }))
})

test('ParquetWriter refuses null and mistyped values with the column named, and is deterministic', async (t) => {
  const dir = await tempDir(t)
  const sink = await FileSink.create(join(dir, 'bad.parquet'))
  t.after(() => sink.discard())
  const writer = new ParquetWriter(sink, FIELDS, {rowGroupSize: 1, createdBy: 'test'})
  const good = makeRows(1)[0]
  await assert.rejects(writer.write({...good, text: null as unknown as string}), {code: 'PARQUET_VALUE', message: /column text expected a string \(values are never null\), not null/})
  await assert.rejects(writer.write({...good, n: 2 ** 31}), {code: 'PARQUET_VALUE', message: /column n expected a 32-bit integer/})
  await assert.rejects(writer.write({...good, tags: []}), {code: 'PARQUET_VALUE', message: /column tags expected a non-empty array/})
  await assert.rejects(writer.write({...good, image: {path: 'x'}}), {code: 'PARQUET_VALUE', message: /column image\.bytes expected a Uint8Array/})
  // a wrong value holding megabytes is named by its shape, not dumped into the message
  const big = {data: Buffer.alloc(5_000_000), check: undefined}
  await assert.rejects(writer.write({...good, image: {bytes: big as never, path: 'x'}}), (error: Error) => {
    assert.match(error.message, /column image\.bytes expected a Uint8Array or \{data, check\} .*, not an object with keys data, check$/)
    assert.ok(error.message.length < 300, `${error.message.length} characters`)
    return true
  })
  await assert.rejects(writer.write({...good, text: 7 as never}), {message: /column text expected a string .*, not 7$/})
  // the refused rows were not kept: the writer goes on and writes only the good one
  await writer.write(good)
  await writer.finish()
  await sink.close()
  const file = await asyncBufferFromFile(join(dir, 'bad.parquet'))
  assert.equal((await parquetMetadataAsync(file)).num_rows, 1n)

  const rows = makeRows(20)
  await writeFile(join(dir, 'a.parquet'), rows, 4)
  await writeFile(join(dir, 'b.parquet'), rows, 4)
  const {readFile} = await import('node:fs/promises')
  assert.ok((await readFile(join(dir, 'a.parquet'))).equals(await readFile(join(dir, 'b.parquet'))))
})

test('ParquetWriter ends a row group at maxRowGroupBytes as well as at rowGroupSize, so memory holds a bounded group', async (t) => {
  const path = join(await tempDir(t), 'big.parquet')
  const sink = await FileSink.create(path)
  const writer = new ParquetWriter(sink, [{name: 'data', type: 'binary'}], {rowGroupSize: 100, maxRowGroupBytes: 1_000_000, createdBy: 'test'})
  for (let i = 0; i < 10; i++) await writer.write({data: Buffer.alloc(300_000, i)}) // 4 rows reach 1 MB
  await writer.finish()
  await sink.close()
  const file = await asyncBufferFromFile(path)
  const metadata = await parquetMetadataAsync(file)
  assert.deepEqual(metadata.row_groups.map((group) => Number(group.num_rows)), [4, 4, 2])
  const rows = await parquetReadObjects({file, metadata, utf8: false})
  assert.deepEqual(rows.map((row) => (row.data as Uint8Array)[0]), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
})
