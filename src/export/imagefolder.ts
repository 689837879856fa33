/**
 * The `datasets` ImageFolder layout: `<out>/<split>/<key>.<ext>` and, beside the images,
 * `<out>/<split>/metadata.jsonl` with one line per image:
 *   captions=first: {"file_name", "text", "caption_id", "key", "sha256", "width", "height"}
 *   captions=all:   {"file_name", "captions": [...], "caption_ids": [...], "key", "sha256", "width", "height"}
 * (`file_name` must be unique per folder, so several captions become a list, not rows.)
 * `load_dataset("imagefolder", data_dir=<out>)` maps the `val` folder to the "validation" split.
 */
import {join} from 'node:path'
import {captionColumns, imageCheck, imageFileName, type ExportSample, type Split} from './sample.js'
import {ensureDir, FileSink, writeNewFile, type FormatWriter, type WriterOptions} from './writer.js'

export function imageFolderMetadata(sample: ExportSample, options: Pick<WriterOptions, 'captions'>): Record<string, unknown> {
  return {
    file_name: imageFileName(sample),
    ...captionColumns(sample, options.captions),
    key: sample.key,
    sha256: sample.sha256,
    width: sample.width,
    height: sample.height,
  }
}

export function createImageFolderWriter(options: WriterOptions): FormatWriter {
  const metadata = new Map<Split, FileSink>()
  return {
    async add(sample) {
      const dir = join(options.dir, sample.split)
      let sink = metadata.get(sample.split)
      if (!sink) {
        await ensureDir(dir)
        sink = await FileSink.create(join(dir, 'metadata.jsonl'), options.hashes)
        metadata.set(sample.split, sink)
      }
      await writeNewFile(join(dir, imageFileName(sample)), sample.image, options.hashes, imageCheck(sample, options))
      sink.write(`${JSON.stringify(imageFolderMetadata(sample, options))}\n`)
    },
    async finish() {
      for (const sink of metadata.values()) await sink.close()
      metadata.clear()
    },
    async close() {
      const sinks = [...metadata.values()]
      metadata.clear()
      await Promise.allSettled(sinks.map((sink) => sink.discard()))
    },
  }
}
