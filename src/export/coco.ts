/**
 * COCO captions: `<out>/<split>/images/<key>.<ext>` and `<out>/<split>/captions.json`:
 *   {"info": {...}, "images": [{"id", "file_name", "width", "height", "sha256"}],
 *    "annotations": [{"id", "image_id", "caption", "caption_id", "source"}]}
 * Image and annotation ids are integers from 1 in input order, counted over the whole
 * export (so they stay unique if splits are merged). `file_name` is relative to `images/`.
 *
 * The JSON is streamed: image entries go straight into captions.json; annotation entries
 * go to a scratch file beside it and are appended when the split is finished, so memory
 * stays bounded however many captions there are. One entry per line.
 */
import {createReadStream} from 'node:fs'
import {rm} from 'node:fs/promises'
import {join} from 'node:path'
import {imageCheck, imageFileName, selectedCaptions, type Split} from './sample.js'
import {ensureDir, FileSink, writeNewFile, type FormatWriter, type WriterOptions} from './writer.js'

interface SplitFiles {
  json: FileSink
  annotations: FileSink
  images: number
  annotationCount: number
}

export function createCocoWriter(options: WriterOptions): FormatWriter {
  const splits = new Map<Split, SplitFiles>()
  let nextImageId = 1
  let nextAnnotationId = 1

  async function openSplit(split: Split): Promise<SplitFiles> {
    const dir = join(options.dir, split)
    await ensureDir(join(dir, 'images'))
    const json = await FileSink.create(join(dir, 'captions.json'), options.hashes)
    const info = {description: `mlcap export, split ${split}`, version: options.mlcapVersion, split}
    json.write(`{"info": ${JSON.stringify(info)},\n"images": [\n`)
    const files = {json, annotations: await FileSink.create(join(dir, '.annotations.partial')), images: 0, annotationCount: 0}
    splits.set(split, files)
    return files
  }

  async function finishSplit(split: Split, files: SplitFiles): Promise<void> {
    await files.annotations.close()
    files.json.write('\n],\n"annotations": [\n')
    for await (const chunk of createReadStream(files.annotations.path)) files.json.write(chunk as Buffer)
    files.json.write('\n]}\n')
    await files.json.close()
    await rm(files.annotations.path)
    splits.delete(split)
  }

  return {
    async add(sample) {
      const files = splits.get(sample.split) ?? (await openSplit(sample.split))
      const imageId = nextImageId++
      await writeNewFile(join(options.dir, sample.split, 'images', imageFileName(sample)), sample.image, options.hashes, imageCheck(sample, options))
      const image = {id: imageId, file_name: imageFileName(sample), width: sample.width, height: sample.height, sha256: sample.sha256}
      files.json.write(`${files.images++ === 0 ? '' : ',\n'}${JSON.stringify(image)}`)
      for (const caption of selectedCaptions(sample, options.captions)) {
        const annotation = {id: nextAnnotationId++, image_id: imageId, caption: caption.text, caption_id: caption.captionId, source: caption.source}
        files.annotations.write(`${files.annotationCount++ === 0 ? '' : ',\n'}${JSON.stringify(annotation)}`)
      }
    },
    async finish() {
      for (const split of [...splits.keys()].sort()) await finishSplit(split, splits.get(split)!)
    },
    async close() {
      const open = [...splits.values()]
      splits.clear()
      await Promise.allSettled(open.flatMap((files) => [files.json.discard(), files.annotations.discard()]))
    },
  }
}
