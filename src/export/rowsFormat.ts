/**
 * Flat tables, one row per (image, caption): `jsonl` → `<out>/captions.jsonl`, `csv` →
 * `<out>/captions.csv` (RFC 4180: header row, CRLF line ends, fields quoted when they hold
 * a comma, quote, CR or LF, quotes doubled). Images go to `<out>/images/<key>.<ext>` and
 * each row's `image` is that path relative to `<out>`. Same columns in both formats;
 * jsonl rows also carry `attributes` when the sample has any.
 */
import {join} from 'node:path'
import {imageCheck, imageFileName, selectedCaptions, type ExportSample} from './sample.js'
import {ensureDir, FileSink, writeNewFile, type FormatWriter, type WriterOptions} from './writer.js'

export const ROW_COLUMNS = Object.freeze(['image', 'key', 'split', 'sha256', 'caption_id', 'caption', 'source', 'width', 'height'] as const)

type Row = Record<(typeof ROW_COLUMNS)[number], string | number>

function rowsOf(sample: ExportSample, options: Pick<WriterOptions, 'captions'>): Row[] {
  return selectedCaptions(sample, options.captions).map((caption) => ({
    image: `images/${imageFileName(sample)}`,
    key: sample.key,
    split: sample.split,
    sha256: sample.sha256,
    caption_id: caption.captionId,
    caption: caption.text,
    source: caption.source,
    width: sample.width,
    height: sample.height,
  }))
}

/** One CSV field per RFC 4180. */
export function csvField(value: string | number): string {
  const text = String(value)
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
}

export function csvLine(values: ReadonlyArray<string | number>): string {
  return `${values.map(csvField).join(',')}\r\n`
}

function createRowsWriter(options: WriterOptions, fileName: string, header: string, line: (row: Row, sample: ExportSample) => string): FormatWriter {
  let sink: FileSink | undefined
  return {
    async add(sample) {
      if (!sink) {
        await ensureDir(join(options.dir, 'images'))
        sink = await FileSink.create(join(options.dir, fileName), options.hashes)
        sink.write(header)
      }
      await writeNewFile(join(options.dir, 'images', imageFileName(sample)), sample.image, options.hashes, imageCheck(sample, options))
      for (const row of rowsOf(sample, options)) sink.write(line(row, sample))
    },
    async finish() {
      await sink?.close()
    },
    async close() {
      await sink?.discard()
    },
  }
}

export function createJsonlWriter(options: WriterOptions): FormatWriter {
  return createRowsWriter(options, 'captions.jsonl', '', (row, sample) =>
    `${JSON.stringify(sample.attributes === undefined ? row : {...row, attributes: sample.attributes})}\n`)
}

export function createCsvWriter(options: WriterOptions): FormatWriter {
  return createRowsWriter(options, 'captions.csv', csvLine(ROW_COLUMNS), (row) => csvLine(ROW_COLUMNS.map((column) => row[column])))
}
