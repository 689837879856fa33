/**
 * WebDataset shards as img2dataset writes them: `<out>/<split>/00000.tar`, `00001.tar`, …
 * Each sample is `<key>.<ext>` (the image bytes), `<key>.json` (metadata) and `<key>.txt`
 * (the first caption, or every caption joined by "\n" when captions=all), in name order
 * like webdataset's TarWriter, all three adjacent so a streaming reader groups them.
 * A shard closes after `shardSize` samples, or before a sample that would take it past
 * `maxShardBytes` (a single larger sample still gets a shard of its own).
 */
import {join} from 'node:path'
import {imageCheck, imageFileName, selectedCaptions, type ExportSample, type Split} from './sample.js'
import {TarWriter} from './tarWriter.js'
import {FileSink, shardName, type FormatWriter, type WriterOptions} from './writer.js'

interface OpenShard {
  sink: FileSink
  tar: TarWriter
  samples: number
}

/** The metadata document stored as `<key>.json`. */
export function webDatasetJson(sample: ExportSample, options: Pick<WriterOptions, 'captions'>): Record<string, unknown> {
  const captions = selectedCaptions(sample, options.captions)
  return {
    key: sample.key,
    sha256: sample.sha256,
    caption: captions[0].text,
    captions: captions.map((caption) => ({id: caption.captionId, text: caption.text, source: caption.source})),
    width: sample.width,
    height: sample.height,
    split: sample.split,
    ...(sample.attributes === undefined ? {} : {attributes: sample.attributes}),
  }
}

export function createWebDatasetWriter(options: WriterOptions): FormatWriter {
  const open = new Map<Split, OpenShard>()
  const nextIndex = new Map<Split, number>()

  async function closeShard(split: Split): Promise<void> {
    const shard = open.get(split)
    if (!shard) return
    open.delete(split)
    await shard.tar.finish()
    await shard.sink.close()
  }

  return {
    async add(sample) {
      const captions = selectedCaptions(sample, options.captions)
      const entries: Array<[string, Uint8Array]> = [
        [imageFileName(sample), sample.image],
        [`${sample.key}.json`, Buffer.from(JSON.stringify(webDatasetJson(sample, options)), 'utf8')],
        [`${sample.key}.txt`, Buffer.from(captions.map((caption) => caption.text).join('\n'), 'utf8')],
      ]
      entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      const sampleBytes = entries.reduce((total, [name, data]) => total + TarWriter.entryBytes(name, data.length), 0)

      let shard = open.get(sample.split)
      if (shard) {
        const projected = shard.tar.bytesWritten + sampleBytes
        if (shard.samples >= options.shardSize || projected + TarWriter.trailerBytes(projected) > options.maxShardBytes) {
          await closeShard(sample.split)
          shard = undefined
        }
      }
      if (!shard) {
        const index = nextIndex.get(sample.split) ?? 0
        nextIndex.set(sample.split, index + 1)
        const sink = await FileSink.create(join(options.dir, sample.split, `${shardName(index)}.tar`), options.hashes)
        shard = {sink, tar: new TarWriter(sink), samples: 0}
        open.set(sample.split, shard)
      }
      const image = imageFileName(sample)
      for (const [name, data] of entries) await shard.tar.addFile(name, data, name === image ? imageCheck(sample, options) : undefined)
      shard.samples++
    },

    async finish() {
      for (const split of [...open.keys()].sort()) await closeShard(split)
    },

    async close() {
      const shards = [...open.values()]
      open.clear()
      await Promise.allSettled(shards.map((shard) => shard.sink.discard()))
    },
  }
}
