import {test} from 'node:test'
import assert from 'node:assert/strict'
import {readdir, readFile} from 'node:fs/promises'
import {join} from 'node:path'
import {asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema} from 'hyparquet'
import {writeExport} from '../../src/export/exporter.js'
import {hfSchemaMetadata} from '../../src/export/hf.js'
import {makeSamples, sha256, streamOf, tempDir} from './fixtures.js'


async function readShard(path: string) {
  const file = await asyncBufferFromFile(path)
  const metadata = await parquetMetadataAsync(file)
  const rows = await parquetReadObjects({file, metadata, utf8: false}) // no compressors: a bare reader must do
  return {metadata, rows}
}

test('hf: <split>/<split>-NNNNN-of-NNNNN.parquet shards open in hyparquet with image{bytes,path}, text and the huggingface metadata', async (t) => {
  const samples = await makeSamples()
  const out = join(await tempDir(t), 'hf')
  await writeExport(streamOf(samples), {format: 'hf', outDir: out, captions: 'first', shardSize: 8, manifestInfo: {lake_commit: 1}})

  const files = (await readdir(out, {recursive: true})).filter((name) => name.endsWith('.parquet')).sort()
  const perSplit = {train: samples.filter((s) => s.split === 'train'), val: samples.filter((s) => s.split === 'val'), test: samples.filter((s) => s.split === 'test')}
  const expectedFiles = Object.entries(perSplit).flatMap(([split, rows]) => {
    const total = Math.ceil(rows.length / 8)
    return Array.from({length: total}, (_, i) => `${split}/${split}-${String(i).padStart(5, '0')}-of-${String(total).padStart(5, '0')}.parquet`)
  }).sort()
  assert.deepEqual(files, expectedFiles)

  const expectedMeta = '{"info": {"features": {"image": {"_type": "Image"}, "text": {"dtype": "string", "_type": "Value"}, "caption_id": {"dtype": "string", "_type": "Value"}, ' +
    '"key": {"dtype": "string", "_type": "Value"}, "sha256": {"dtype": "string", "_type": "Value"}, "split": {"dtype": "string", "_type": "Value"}, ' +
    '"width": {"dtype": "int32", "_type": "Value"}, "height": {"dtype": "int32", "_type": "Value"}}}}'
  assert.equal(hfSchemaMetadata('first'), expectedMeta)

  for (const [split, expected] of Object.entries(perSplit)) {
    const rows: Array<Record<string, unknown>> = []
    for (const name of files.filter((file) => file.startsWith(`${split}/`))) {
      const shard = await readShard(join(out, name))
      const kv = Object.fromEntries((shard.metadata.key_value_metadata ?? []).map(({key, value}) => [key, value]))
      assert.equal(kv.huggingface, expectedMeta, `${name} carries the datasets features`)
      assert.ok(JSON.parse(kv.huggingface!).info.features.image._type === 'Image')
      const image = parquetSchema(shard.metadata).children.find((child) => child.element.name === 'image')!
      assert.deepEqual(image.children.map((child) => [child.element.name, child.element.type]), [['bytes', 'BYTE_ARRAY'], ['path', 'BYTE_ARRAY']])
      assert.ok(shard.metadata.row_groups.every((group) => group.num_rows <= 100n), 'row groups of at most 100 image rows')
      // image bytes do not compress: pages are stored uncompressed, so any reader opens them without a codec plug-in
      assert.ok(shard.metadata.row_groups.every((group) => group.columns.every((column) => column.meta_data?.codec === 'UNCOMPRESSED')))
      rows.push(...shard.rows)
    }
    assert.equal(rows.length, expected.length, split)
    for (const [i, row] of rows.entries()) {
      const sample = expected[i]
      const image = row.image as {bytes: Uint8Array; path: string}
      assert.equal(sha256(image.bytes), sample.sha256, 'image bytes round-trip')
      assert.equal(image.path, `${sample.key}.${sample.imageExt}`)
      assert.deepEqual({text: row.text, caption_id: row.caption_id, key: row.key, sha256: row.sha256, split: row.split, width: row.width, height: row.height}, {
        text: sample.captions[0].text, caption_id: sample.captions[0].captionId, key: sample.key, sha256: sample.sha256, split, width: sample.width, height: sample.height,
      })
    }
  }
})

test('hf: captions=all writes captions and caption_ids lists, declared as Sequence features', async (t) => {
  const samples = await makeSamples()
  const out = join(await tempDir(t), 'hf')
  await writeExport(streamOf(samples), {format: 'hf', outDir: out, captions: 'all', manifestInfo: {}})
  const files = (await readdir(out, {recursive: true})).filter((name) => name.endsWith('.parquet')).sort()
  assert.deepEqual(files, ['test/test-00000-of-00001.parquet', 'train/train-00000-of-00001.parquet', 'val/val-00000-of-00001.parquet'])
  const {metadata, rows} = await readShard(join(out, 'train', 'train-00000-of-00001.parquet'))
  const features = JSON.parse(metadata.key_value_metadata!.find(({key}) => key === 'huggingface')!.value!).info.features
  assert.deepEqual(features.captions, {feature: {dtype: 'string', _type: 'Value'}, _type: 'Sequence'})
  assert.equal(features.text, undefined)
  const train = samples.filter((sample) => sample.split === 'train')
  assert.deepEqual(rows.map((row) => row.captions), train.map((sample) => sample.captions.map((caption) => caption.text)))
  assert.deepEqual(rows.map((row) => row.caption_ids), train.map((sample) => sample.captions.map((caption) => caption.captionId)))
})

test('hf: maxShardBytes flushes a shard early, so buffered rows stay bounded', async (t) => {
  const samples = (await makeSamples()).filter((sample) => sample.split === 'train')
  const out = join(await tempDir(t), 'hf')
  const limit = 2000
  await writeExport(streamOf(samples), {format: 'hf', outDir: out, captions: 'first', maxShardBytes: limit, manifestInfo: {}})
  const files = (await readdir(join(out, 'train'))).sort()
  let expectedShards = 0
  let bytes = 0
  for (const sample of samples) {
    bytes += sample.image.length + Buffer.byteLength(sample.captions[0].text)
    if (bytes >= limit) [expectedShards, bytes] = [expectedShards + 1, 0]
  }
  if (bytes > 0) expectedShards++
  assert.ok(expectedShards > 1)
  assert.equal(files.length, expectedShards)
  assert.ok(files.every((file) => file.endsWith(`-of-${String(expectedShards).padStart(5, '0')}.parquet`)))
  let rows = 0
  for (const file of files) rows += (await readShard(join(out, 'train', file))).rows.length
  assert.equal(rows, samples.length)
})

test('hf: shards read back in parquet-wasm (arrow-rs, the Rust implementation) with the Arrow types datasets expects', async (t) => {
  const {readParquet} = await import('parquet-wasm/node')
  const {tableFromIPC} = await import('apache-arrow')
  const samples = await makeSamples()
  for (const captions of ['first', 'all'] as const) {
    const out = join(await tempDir(t), `hf-${captions}`)
    await writeExport(streamOf(samples), {format: 'hf', outDir: out, captions, shardSize: 7, manifestInfo: {}})
    const read: Array<Record<string, any>> = []
    for (const name of (await readdir(out, {recursive: true})).filter((file) => file.endsWith('.parquet')).sort()) {
      const table = tableFromIPC(readParquet(new Uint8Array(await readFile(join(out, name)))).intoIPCStream())
      assert.deepEqual(table.schema.fields.map((field) => `${field.name}: ${field.type}`), [
        'image: Struct<{bytes:Binary, path:Utf8}>',
        ...(captions === 'all' ? ['captions: List<Utf8>', 'caption_ids: List<Utf8>'] : ['text: Utf8', 'caption_id: Utf8']),
        'key: Utf8', 'sha256: Utf8', 'split: Utf8', 'width: Int32', 'height: Int32',
      ])
      assert.equal(table.schema.metadata.get('huggingface'), hfSchemaMetadata(captions))
      for (const row of table) read.push(row.toJSON())
    }
    const bySplit = ['test', 'train', 'val'].flatMap((split) => samples.filter((sample) => sample.split === split))
    assert.equal(read.length, samples.length)
    for (const [i, row] of read.entries()) {
      const sample = bySplit[i]
      assert.equal(sha256(row.image.bytes), sample.sha256)
      assert.equal(row.image.path, `${sample.key}.${sample.imageExt}`)
      const texts = captions === 'all' ? [...row.captions] : [row.text]
      assert.deepEqual(texts, sample.captions.slice(0, captions === 'all' ? undefined : 1).map((caption) => caption.text))
      assert.deepEqual([row.key, row.split, row.width, row.height], [sample.key, sample.split, sample.width, sample.height])
    }
  }
})
