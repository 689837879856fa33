/**
 * Parquet shards that Hugging Face `datasets` loads with no loading script, one folder per
 * split (as the other formats):
 *
 *   <out>/train/train-00000-of-00002.parquet, <out>/train/train-00001-of-00002.parquet,
 *   <out>/val/val-00000-of-00001.parquet, <out>/test/test-00000-of-00001.parquet
 *
 * `load_dataset("parquet", data_dir=<out>)` (or `load_dataset(<out>)`) finds the splits by
 * folder name; like every folder-based loader it names the `val` folder's split
 * "validation". The `split` column keeps mlcap's name ("val"). File names repeat the split
 * and carry the shard count, so a shard copied elsewhere still says what it is.
 *
 * Columns: image struct{bytes, path} (the `Image` feature's storage), then text + caption_id
 * (captions=first) or captions + caption_ids lists (captions=all), key, sha256, split, width,
 * height. The schema's `huggingface` key-value metadata carries the features exactly as
 * `datasets` serializes them (json.dumps of {"info": {"features": …}}), so `image` decodes
 * to a PIL image. Lists use the `Sequence` spelling, which datasets 2.x, 3.x and 4.x all read.
 *
 * Shards are written by mlcap's own ParquetWriter straight to the file, in row groups of 100
 * rows (as `datasets` uses for image data). The image bytes are the first column and are
 * written as each sample arrives, one page per image, so they are never held or copied (the
 * exporter reuses their memory for the next image); memory holds the other columns of one
 * row group. A shard closes after `shardSize` rows or once its images and captions reach
 * `maxShardBytes`; it is written under a staging name and renamed when the shard count of its
 * split is known.
 *
 * Pages are stored uncompressed. The rows are almost all encoded image bytes, which general
 * compression cannot shrink (zstd saved 0.0% on the benchmark's JPEGs); the caption columns
 * it could shrink are well under 1% of a shard. Uncompressed Parquet is also the one every
 * reader opens without an extra codec (hyparquet needs a plug-in for zstd).
 */
import {rename} from 'node:fs/promises'
import {join} from 'node:path'
import {ParquetWriter, type ParquetField, type ParquetRow} from './parquetWriter.js'
import {captionColumns, imageCheck, imageFileName, selectedCaptions, type CaptionMode, type ExportSample, type Split} from './sample.js'
import {FileSink, shardName, type FormatWriter, type WriterOptions} from './writer.js'

export const HF_ROW_GROUP_SIZE = 100

const STRING = {dtype: 'string', _type: 'Value'}
const INT32 = {dtype: 'int32', _type: 'Value'}
const STRINGS = {feature: STRING, _type: 'Sequence'}

/** The `datasets` Features of an export, in column order. */
export function hfFeatures(captions: CaptionMode): Record<string, unknown> {
  return {
    image: {_type: 'Image'},
    ...(captions === 'all' ? {captions: STRINGS, caption_ids: STRINGS} : {text: STRING, caption_id: STRING}),
    key: STRING,
    sha256: STRING,
    split: STRING,
    width: INT32,
    height: INT32,
  }
}

/** Python's json.dumps defaults: ", " and ": " separators, non-ASCII escaped. */
function pythonJsonDumps(value: unknown): string {
  return JSON.stringify(value)
    .replace(/"(?:[^"\\]|\\.)*"|[,:]/g, (token) => (token === ',' ? ', ' : token === ':' ? ': ' : token))
    .replace(/[\u0080-\uffff]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/** The value of the `huggingface` schema metadata key, byte for byte as `datasets` writes it. */
export function hfSchemaMetadata(captions: CaptionMode): string {
  return pythonJsonDumps({info: {features: hfFeatures(captions)}})
}

/** `<split>/<split>-<index>-of-<total>.parquet` */
export function hfShardPath(split: Split, index: number, total: number): string {
  return `${split}/${split}-${shardName(index)}-of-${shardName(total)}.parquet`
}

/** The Parquet columns of an export, in the order of hfFeatures. */
function hfFields(captions: CaptionMode): ParquetField[] {
  return [
    {name: 'image', type: 'struct', fields: [{name: 'bytes', type: 'binary'}, {name: 'path', type: 'string'}]},
    ...(captions === 'all'
      ? [{name: 'captions', type: 'list', element: 'string'}, {name: 'caption_ids', type: 'list', element: 'string'}] as const
      : [{name: 'text', type: 'string'}, {name: 'caption_id', type: 'string'}] as const),
    {name: 'key', type: 'string'},
    {name: 'sha256', type: 'string'},
    {name: 'split', type: 'string'},
    {name: 'width', type: 'int32'},
    {name: 'height', type: 'int32'},
  ]
}

function hfRow(sample: ExportSample, options: Pick<WriterOptions, 'captions' | 'verifyImages'>): ParquetRow {
  const image = sample.image
  const check = imageCheck(sample, options)
  const captions = options.captions
  return {
    image: {bytes: check ? {data: image, check} : image, path: imageFileName(sample)},
    ...captionColumns(sample, captions),
    key: sample.key,
    sha256: sample.sha256,
    split: sample.split,
    width: sample.width,
    height: sample.height,
  }
}

interface OpenShard {
  sink: FileSink
  parquet: ParquetWriter
  rows: number
  bytes: number
}

export function createHfWriter(options: WriterOptions): FormatWriter {
  const fields = hfFields(options.captions)
  const metadata = {huggingface: hfSchemaMetadata(options.captions)}
  const open = new Map<Split, OpenShard>()
  const staged = new Map<Split, string[]>() // closed shards per split, under staging names, in order

  async function closeShard(split: Split): Promise<void> {
    const shard = open.get(split)
    if (!shard) return
    open.delete(split)
    await shard.parquet.finish()
    await shard.sink.close()
  }

  return {
    async add(sample) {
      let shard = open.get(sample.split)
      if (!shard) {
        const names = staged.get(sample.split) ?? []
        staged.set(sample.split, names)
        const path = join(options.dir, sample.split, `.staging-${shardName(names.length)}.parquet`)
        names.push(path)
        const sink = await FileSink.create(path, options.hashes)
        shard = {sink, parquet: new ParquetWriter(sink, fields, {rowGroupSize: HF_ROW_GROUP_SIZE, keyValueMetadata: metadata, createdBy: `mlcap version ${options.mlcapVersion}`, streamFirstColumn: true}), rows: 0, bytes: 0}
        open.set(sample.split, shard)
      }
      await shard.parquet.write(hfRow(sample, options))
      shard.rows++
      shard.bytes += sample.image.length + selectedCaptions(sample, options.captions).reduce((total, caption) => total + Buffer.byteLength(caption.text), 0)
      if (shard.rows >= options.shardSize || shard.bytes >= options.maxShardBytes) await closeShard(sample.split)
    },

    async finish() {
      for (const split of [...open.keys()].sort()) await closeShard(split)
      for (const [split, names] of staged) {
        for (const [index, name] of names.entries()) {
          const final = join(options.dir, hfShardPath(split, index, names.length))
          await rename(name, final)
          const hash = options.hashes?.get(name)
          if (hash) options.hashes!.record(final, hash)
        }
      }
    },

    async close() {
      const shards = [...open.values()]
      open.clear()
      await Promise.allSettled(shards.map((shard) => shard.sink.discard()))
    },
  }
}
