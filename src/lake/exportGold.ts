/**
 * gold.pairs → a training set on disk, in any format of src/export.
 *
 * One snapshot: a sandboxed LakeReader is opened once and its commit is recorded in the
 * manifest with the normalized arguments, so the same commit and arguments give the same
 * bytes. Pairs are grouped by image (one sample per image, captions ordered by caption_id),
 * in a fixed order (split, then image SHA-256), and streamed from DuckDB a chunk at a time;
 * image bytes are read from the object store one sample at a time, like `tar -cf` reads
 * its files. Memory stays flat whatever the size of the export.
 *
 * The user's --where is a predicate over gold.pairs: checked by DuckDB's parser (one
 * expression, no subquery) and run in the sandbox (no file outside the lake).
 */
import {closeSync, fstatSync, openSync, readSync} from 'node:fs'

import {EXPORT_FORMATS, writeExport, type ExportFormat, type ExportSummary} from '../export/exporter.js'
import {CAPTION_MODES, IMAGE_EXTS, type CaptionMode, type ExportSample, type ImageExt, type Split} from '../export/sample.js'
import {CatalogOptions} from './catalog.js'
import {invalidParameter, MlcapError, UsageError} from './errors.js'
import {LakeLayout} from './layout.js'
import {isMissingFileError, LakeReader, ReaderOptions} from './reader.js'
import {REPAIR_DERIVATIVE, REPAIR_EITHER, REPAIR_ORIGINAL} from './objects.js'
import {BRONZE_IMAGES, GOLD_PAIRS, SILVER_IMAGES} from './schema.js'
import {SNIFF_HEAD_BYTES, sniffImageFormat} from './sniff.js'
import {checkPredicate, openSandboxedReader} from './sqlSandbox.js'

export const EXPORT_SPLITS = Object.freeze(['train', 'val', 'test', 'all'] as const)
export type ExportSplit = (typeof EXPORT_SPLITS)[number]

export interface ExportGoldOptions extends CatalogOptions {
  format: ExportFormat
  outDir: string
  /** Which split to export (default all). */
  split?: ExportSplit
  /** A SQL predicate over gold.pairs selecting pairs (an image keeps the captions of its selected pairs). */
  where?: string
  /** At most this many images, chosen by SHA-256 (a fixed pseudo-random sample across splits). */
  limit?: number
  /** The original bytes (bronze) instead of the normalized derivative (silver). */
  original?: boolean
  /**
   * Hash every image as it is written and check it against the SHA-256 the lake names it by
   * (EXPORT_HASH_MISMATCH). Without it only each object's size is checked: a full check hashes
   * every image a second time (~25% more CPU; see bench/export.ts).
   */
  verifyImages?: boolean
  /** Every caption of an image, or the first by caption_id (default all). */
  captions?: CaptionMode
  /** Most samples per shard (hf, webdataset). */
  shardSize?: number
  /** Most bytes per shard, approximately (hf, webdataset). */
  maxShardBytes?: number
  /** Replace an earlier export at outDir once the new one is complete. */
  overwrite?: boolean
  signal?: AbortSignal
  /** Samples written so far, of the total selected. */
  onProgress?: (done: number, total: number) => void
}

export type ExportGoldSummary = ExportSummary & {commitId: number}

const WHERE_EXAMPLE = `"caption_source = 'human' AND words >= 5"`

interface Settings {
  split: ExportSplit
  where: string | null
  limit: number | null
  original: boolean
  captions: CaptionMode
}

function fail(name: string, expected: string, received: unknown): UsageError {
  const error = invalidParameter(name, expected, received)
  error.message = `export: ${error.message}`
  return error
}

function checkOptions(options: ExportGoldOptions): Settings {
  if (!Object.hasOwn(EXPORT_FORMATS, options.format)) throw fail('format', `one of ${Object.keys(EXPORT_FORMATS).join(', ')}`, options.format)
  const split = options.split ?? 'all'
  if (!(EXPORT_SPLITS as readonly string[]).includes(split)) throw fail('split', `one of ${EXPORT_SPLITS.join(', ')}`, split)
  const captions = options.captions ?? 'all'
  if (!(CAPTION_MODES as readonly string[]).includes(captions)) throw fail('captions', `one of ${CAPTION_MODES.join(', ')}`, captions)
  const limit = options.limit ?? null
  if (limit !== null && (!Number.isSafeInteger(limit) || limit <= 0)) throw fail('limit', 'a positive integer', limit)
  if (options.where !== undefined && typeof options.where !== 'string') throw fail('where', 'a SQL predicate (string)', options.where)
  return {split, where: options.where === undefined ? null : options.where.trim(), limit, original: options.original === true, captions}
}

/** What the manifest records besides the format and options (created_from). */
function manifestInfo(commitId: number, settings: Settings): Record<string, unknown> {
  return {
    lake_commit: commitId,
    table: GOLD_PAIRS.id,
    split: settings.split,
    where: settings.where,
    limit: settings.limit,
    images: settings.original ? 'original' : 'normalized',
  }
}

/** One selected image, as the selection query returns it (only what a sample needs: each column costs conversion time). */
interface Row {
  /** The gold image (lake_sha256). */
  sha256: string
  /** The sample key: the first 16 hex digits of sha256, or all of it where two selected images share them. */
  key: string
  split: Split
  group_id: string
  captions: string
  /** Images selected (the same in every row). */
  total: number
  /** The object to export: the original (bronze) or the derivative gold chose. */
  object_sha256: string
  /** Its format and size as the lake recorded them; null when unknown (see objectColumns). */
  object_format: string | null
  object_bytes: number | null
  width: number | null
  height: number | null
}

/**
 * Exports the selected gold pairs to `outDir` (atomically: see writeExport). Throws a
 * UsageError for bad options or a --where that is not a predicate over gold.pairs, and
 * EXPORT_EMPTY naming the filter that selected nothing.
 */
export async function exportGold(layout: LakeLayout, options: ExportGoldOptions): Promise<ExportGoldSummary> {
  const settings = checkOptions(options)
  if (typeof options.outDir === 'string' && layout.contains(options.outDir)) {
    // In a table folder its files would be read as table data by plain-folder readers, and gc would delete them.
    throw new UsageError('EXPORT_OUT_IN_LAKE', `export: --out ${options.outDir} is inside the lake ${layout.root}; expected a folder outside it`, 'The lake holds only what mlcap commits. Export elsewhere, e.g. --out ./export')
  }
  // A compaction that commits while the selection is sorted moves data files away: take a
  // fresh snapshot once. After the first chunk DuckDB has read everything it needs.
  for (let attempt = 1; ; attempt++) {
    const reader = await openSandboxedReader(layout, {...options, ...exportReader(settings)})
    let opened: Awaited<ReturnType<typeof openSelection>>
    try {
      opened = await openSelection(reader, settings)
    } catch (error) {
      reader.close()
      if (attempt < 2 && isMissingFileError(error)) continue
      throw error
    }
    try {
      const commitId = reader.snapshot.commitId
      // Closing the reader takes the main thread ~4 ms (DuckDB frees what the sort used): done once
      // the last row is read, not after the export, it overlaps the hash thread finishing the last file.
      const samples = samplesOf(layout, opened.rows, settings, () => reader.close())
      const summary = await writeExport(samples, {
        format: options.format,
        outDir: options.outDir,
        captions: settings.captions,
        shardSize: options.shardSize,
        maxShardBytes: options.maxShardBytes,
        manifestInfo: manifestInfo(commitId, settings),
        overwrite: options.overwrite,
        verifyImages: options.verifyImages,
        signal: options.signal,
        onProgress: options.onProgress && ((done) => options.onProgress!(done, opened.total)),
      })
      return {...summary, commitId}
    } finally {
      reader.close()
    }
  }
}

/**
 * The reader export needs: views of the two tables the selection reads (the user's --where
 * reads gold.pairs alone, see checkPredicate), and one DuckDB thread. Measured on the export
 * benchmark (2,000 images, 2 busy cores): the full reader took ~37 ms to open, this one ~25;
 * one thread sorted the selection in ~32 ms where two took ~43, and its reader closed in ~4 ms
 * instead of ~7. A selection large enough for a second thread to sort it faster spends far
 * longer writing its images than being sorted.
 */
function exportReader(settings: Settings): ReaderOptions {
  return {tables: [GOLD_PAIRS.id, settings.original ? BRONZE_IMAGES.id : SILVER_IMAGES.id], threads: 1}
}

/**
 * The columns of the object to export, and what the lake recorded about it. Originals: bronze's
 * row. Derivatives: silver's row describes the one gold chose unless silver was rebuilt with
 * other settings since gold ran (then its format is sniffed and its size not checked); the
 * width and height are gold's.
 */
function objectColumns(original: boolean): {columns: string; join: string} {
  return original
    ? {
        columns: `x.sha256 AS object_sha256, b.format AS object_format, b.bytes AS object_bytes, b.width, b.height`,
        join: `LEFT JOIN bronze.images b USING (sha256)`,
      }
    : {
        columns: `x.image.sha256 AS object_sha256,
                  CASE WHEN s.normalized_sha256 = x.image.sha256 THEN s.normalized_format END AS object_format,
                  CASE WHEN s.normalized_sha256 = x.image.sha256 THEN s.normalized_bytes END AS object_bytes,
                  x.image.width AS width, x.image.height AS height`,
        join: `LEFT JOIN silver.images s USING (sha256)`,
      }
}

async function openSelection(reader: LakeReader, settings: Settings): Promise<{total: number; rows: AsyncIterator<Row>}> {
  const c = reader.connection
  const picked = settings.where === null
    ? `SELECT * FROM gold.pairs`
    : await checkPredicate(c, GOLD_PAIRS.id, settings.where, {label: 'export: --where', example: WHERE_EXAMPLE})
  // An image's pairs share one split (gold never splits a group); min() keeps even a damaged lake deterministic.
  const images = `
    picked AS (${picked}),
    images AS (
      SELECT sha256, min(split) AS split, min(group_id) AS group_id,
             arg_min({'sha256': image_sha256, 'width': width, 'height': height}, caption_id) AS image,
             -- list_sort orders the structs by their first field, the caption_id (unique): the same
             -- order as list(… ORDER BY caption_id), at half the cost of an ordered aggregate
             to_json(list_sort(list({'id': caption_id, 'text': caption,
                                     'source': CASE WHEN model_id IS NULL THEN caption_source ELSE caption_source || ':' || model_id END}))) AS captions
        FROM picked GROUP BY sha256)`
  const splitFilter = `($split = 'all' OR split = $split)`
  const values = {split: settings.split}
  const object = objectColumns(settings.original)
  const result = await runWhere(settings, () =>
    c.stream(
      `WITH ${images},
       chosen AS (SELECT * FROM images WHERE ${splitFilter} ${settings.limit === null ? '' : `ORDER BY sha256 LIMIT ${settings.limit}`})
       SELECT x.sha256,
              CASE WHEN count(*) OVER (PARTITION BY left(x.sha256, 16)) > 1 THEN x.sha256 ELSE left(x.sha256, 16) END AS key,
              x.split, x.group_id, x.captions, count(*) OVER () AS total, ${object.columns}
         FROM chosen x ${object.join}
        ORDER BY x.split, x.sha256`,
      values,
    ),
  )
  const chunks = result.yieldRowObjectJson()
  // The first chunk makes DuckDB sort the whole selection: every data file is read now.
  const first = await runWhere(settings, () => chunks.next())
  const firstRows = first.done ? [] : (first.value as unknown as Row[])
  if (firstRows.length === 0) {
    // Nothing selected: count what each filter kept, to say which one selected nothing.
    const counts = (
      await c.runAndReadAll(`WITH ${images} SELECT (SELECT count(*) FROM gold.pairs) AS pairs, (SELECT count(*) FROM picked) AS picked`)
    ).getRowObjectsJson()[0]
    throw emptySelection(reader.snapshot.commitId, settings, Number(counts.pairs), Number(counts.picked))
  }
  const total = Number(firstRows[0].total)
  async function* rows(): AsyncGenerator<Row> {
    yield* firstRows
    for (;;) {
      const next = await chunks.next()
      if (next.done) return
      yield* next.value as unknown as Row[]
    }
  }
  return {total, rows: rows()}
}

/** Errors while the user's predicate runs (the sandbox refusing a file, a cast failing) name the predicate. */
async function runWhere<T>(settings: Settings, work: () => Promise<T>): Promise<T> {
  try {
    return await work()
  } catch (error) {
    if (settings.where === null || error instanceof MlcapError || isMissingFileError(error)) throw error
    throw new UsageError(
      'PREDICATE_INVALID',
      `export: --where ${JSON.stringify(settings.where)} failed: ${(error as Error).message.split('\n')[0]}; expected a predicate over the columns of gold.pairs that reads no file`,
      `columns of gold.pairs: ${GOLD_PAIRS.columns.map((col) => col.name).join(', ')}`,
    )
  }
}

function emptySelection(commitId: number, settings: Settings, pairs: number, picked: number): MlcapError {
  const at = `at lake commit ${commitId}`
  if (pairs === 0) {
    return new MlcapError('EXPORT_EMPTY', `export: gold.pairs is empty ${at}; expected curated image–caption pairs to export`, {
      hint: 'build gold first: mlcap ingest <folder>, then mlcap etl run silver gold (mlcap status shows what is pending)',
    })
  }
  if (picked === 0) {
    return new MlcapError('EXPORT_EMPTY', `export: --where ${JSON.stringify(settings.where)} selected none of the ${pairs} pairs in gold.pairs ${at}`, {
      hint: 'loosen the predicate; check it with mlcap query "select count(*) from gold.pairs where …" (and mlcap etl run gold if gold is behind silver)',
    })
  }
  return new MlcapError(
    'EXPORT_EMPTY',
    `export: --split ${settings.split} selected no image of the ${picked} pairs ${settings.where === null ? 'in gold.pairs' : 'that --where selected'} ${at}`,
    {hint: 'choose another split (--split all), or rerun mlcap etl run gold with other --split ratios (mlcap query "select split, count(*) from gold.pairs group by all")'},
  )
}

const FORMAT_EXT: Record<string, ImageExt> = {jpeg: 'jpg', jpg: 'jpg', png: 'png', webp: 'webp', gif: 'gif', tiff: 'tiff', avif: 'avif', heif: 'heif'}

function extOf(format: string | null | undefined): ImageExt | undefined {
  const ext = format ? FORMAT_EXT[format.toLowerCase()] : undefined
  return ext && (IMAGE_EXTS as readonly string[]).includes(ext) ? ext : undefined
}

/**
 * Reads objects' bytes synchronously into one buffer it reuses: each read returns a view
 * that is valid until the next (writers that keep image bytes past `add` copy them; see
 * ExportSample.image). Each object's size is checked against the lake's record; its SHA-256
 * only with verifyImages (the writers check it as they write).
 *
 * Measured on the export benchmark (2 cores, warm page cache, 2,000 images of ~100 KB):
 * - synchronous reads took 60 ms where promises 16 ahead took 170–390 ms (four thread-pool
 *   round trips per file: open, fstat, read, close), and the export was ~25% faster;
 * - reading into one buffer instead of a new one per image saved ~100 ms of CPU per export
 *   (page faults on fresh memory, and the garbage collections that 200 MB of short-lived
 *   buffers set off).
 */
class ObjectReader {
  private buffer: Buffer = Buffer.allocUnsafeSlow(1 << 20)

  constructor(private readonly layout: LakeLayout, private readonly original: boolean) {}

  /**
   * The bytes of object `hash`; `expectedBytes` is its size as the lake recorded it (null when
   * unknown). A size that differs is damage (a truncated or replaced file): EXPORT_OBJECT_DAMAGED.
   */
  read(hash: string, row: Row, expectedBytes: number | null): Buffer {
    const file = this.layout.objectPath(hash)
    let fd: number
    try {
      fd = openSync(file, 'r')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
      throw this.missing(hash, row, file, error)
    }
    try {
      const size = fstatSync(fd).size
      if (expectedBytes !== null && size !== expectedBytes) throw this.damaged(hash, row, file, `is ${size} bytes; the lake recorded ${expectedBytes}`)
      if (size > this.buffer.length) this.buffer = Buffer.allocUnsafeSlow(Math.max(size, 2 * this.buffer.length))
      let at = 0
      while (at < size) {
        const n = readSync(fd, this.buffer, at, size - at, at)
        if (n === 0) throw this.damaged(hash, row, file, `ended after ${at} of its ${size} bytes while being read`)
        at += n
      }
      return this.buffer.subarray(0, size)
    } finally {
      closeSync(fd)
    }
  }

  private what(hash: string, row: Row): string {
    return `the ${this.original ? 'original' : 'normalized'} image ${hash} of gold image ${row.sha256}`
  }

  private missing(hash: string, row: Row, file: string, cause: unknown): MlcapError {
    return new MlcapError(
      'EXPORT_OBJECT_MISSING',
      `export: ${this.what(hash, row)} is missing from the object store (${file}); expected every image gold.pairs names to be there`,
      {
        hint: this.original
          ? `something outside mlcap removed it: repair it by ${REPAIR_ORIGINAL}, or restore the objects folder from a backup`
          : `rebuild the derivative: ${REPAIR_DERIVATIVE}; or export the originals with --original`,
        cause,
      },
    )
  }

  private damaged(hash: string, row: Row, file: string, how: string): MlcapError {
    return new MlcapError('EXPORT_OBJECT_DAMAGED', `export: ${this.what(hash, row)} is damaged: ${file} ${how}`, {
      hint: this.original ? `repair it by ${REPAIR_ORIGINAL}, then export again` : `repair it with ${REPAIR_DERIVATIVE}, then export again`,
    })
  }
}

/** The extension of an image whose format the lake does not record, from its first bytes. */
function sniffedExt(image: Buffer): ImageExt | undefined {
  const sniffed = sniffImageFormat(image.subarray(0, SNIFF_HEAD_BYTES))
  return 'format' in sniffed ? extOf(sniffed.format) : undefined
}

function sampleOf(row: Row, image: Buffer): ExportSample {
  const hash = row.object_sha256
  const imageExt = extOf(row.object_format) ?? sniffedExt(image)
  if (!imageExt) {
    throw new MlcapError('EXPORT_IMAGE_FORMAT', `export: cannot tell the format of image ${hash} (gold image ${row.sha256}); expected one of ${IMAGE_EXTS.join(', ')}`, {
      hint: `the lake object named by that hash is damaged. ${REPAIR_EITHER}`,
    })
  }
  const width = Number(row.width)
  const height = Number(row.height)
  const captions = (JSON.parse(row.captions) as Array<{id: string; text: string; source: string}>).map((caption) => ({
    captionId: caption.id,
    text: caption.text,
    source: caption.source,
  }))
  return {
    key: row.key,
    sha256: hash,
    image,
    imageExt,
    split: row.split,
    captions,
    width,
    height,
    attributes: {lake_sha256: row.sha256, group_id: row.group_id},
  }
}

/**
 * Rows → samples, reading each image's bytes as the writer asks for the sample (into memory the
 * next sample reuses). `lastRowRead` is called once every row is read.
 */
async function* samplesOf(layout: LakeLayout, rows: AsyncIterator<Row>, settings: Settings, lastRowRead: () => void): AsyncGenerator<ExportSample> {
  const objects = new ObjectReader(layout, settings.original)
  for (;;) {
    const next = await rows.next()
    if (next.done) {
      lastRowRead()
      return
    }
    const row = next.value
    yield sampleOf(row, objects.read(row.object_sha256, row, row.object_bytes === null ? null : Number(row.object_bytes)))
  }
}
