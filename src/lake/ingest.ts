import os from 'node:os'
import path from 'node:path'

import {keyOf, sha256Hex} from './hashing.js'
import {ensureCatalog, CatalogOptions} from './catalog.js'
import {commitBatch} from './commit.js'
import {CaptionSourceKind, classifyCaptionFile, DEFAULT_MAX_CAPTION_BYTES, parseCaptionFile} from './captionSources.js'
import {LakeLayout} from './layout.js'
import {FileBuffers} from './fileBuffers.js'
import {putObject} from './objects.js'
import {probeImage} from './probe.js'
import {withLakeReader} from './reader.js'
import {isIngestRejection} from './rejection.js'
import type {RejectReason} from './rejectReasons.js'
import {beginRun, finishCommittedRun, finishRun, Run} from './runs.js'
import {checkComplete, SNIFF_HEAD_BYTES, sniffImageFormat} from './sniff.js'
import {forEachLimited} from './stageRun.js'
import {StagedBatch} from './staging.js'
import {walkInputs, WalkEntry} from './walk.js'

export interface IngestOptions extends CatalogOptions {
  /** Keep GPS coordinates in bronze.images (default: only a presence flag). */
  keepGps?: boolean
  /** Refuse images with more pixels than this (decompression bombs). */
  maxPixels?: number
  /** Refuse captions larger than this many bytes. */
  maxCaptionBytes?: number
  /** Files per commit: bounds memory and what a crash can lose (default 2000). */
  batchSize?: number
  /** Files read, hashed and probed at once (default 2 × cores). */
  concurrency?: number
  /** Re-read files whose path, size and modification time the lake already knows. */
  rehash?: boolean
  /** How the files arrived, recorded in bronze.sources.source. */
  source?: 'ingest' | 'watch' | 'api'
  signal?: AbortSignal
  onProgress?: (progress: IngestProgress) => void
  /** Called for every input refused (also those whose row turns out to be already in the lake). */
  onReject?: (reject: {path: string | null; reason: RejectReason; message: string}) => void
  /**
   * Asked when an image looks incomplete (truncated, empty): return true to skip it
   * without a reject row because it is probably still being written (watch retries it).
   */
  deferIncomplete?: (entry: {path: string; size: number; mtimeMs: number}, reason: RejectReason) => boolean
}

export interface IngestProgress {
  discovered: number
  processed: number
  rejected: number
}

export interface IngestSummary {
  runId: string
  status: 'succeeded' | 'interrupted'
  /** Commits this run made (none when everything was already known). */
  commits: number[]
  filesSeen: number
  images: {new: number; known: number}
  sources: {new: number}
  captions: {found: number; new: number}
  rejects: {total: number; new: number; byReason: Record<string, number>}
  skipped: {hidden: number}
  seconds: number
  /** Problems that did not undo the work (the end of the run could not be recorded); absent when none. */
  warnings?: string[]
}

export const INGEST_DEFAULTS = Object.freeze({
  maxPixels: 268_402_689, // sharp's own default limit (16383 × 16383)
  maxCaptionBytes: DEFAULT_MAX_CAPTION_BYTES,
  batchSize: 2000,
})

type IngestSettings = IngestOptions & {maxPixels: number; maxCaptionBytes: number; batchSize: number}

export interface KnownSource {
  sha256: string
  bytes: number
  modifiedMs: number
}

/** Whether a file the lake knows by path still has the size and (whole-ms) mtime it had: then it is not read again. */
export function isUnchanged(known: KnownSource | undefined, file: {size: number; mtimeMs: number}): known is KnownSource {
  return known !== undefined && known.bytes === file.size && Math.trunc(known.modifiedMs) === Math.trunc(file.mtimeMs)
}

const IMAGE_ROW = 'bronze.images'
const SOURCE_ROW = 'bronze.sources'
const CAPTION_ROW = 'bronze.captions'
const REJECT_ROW = 'bronze.rejects'

/**
 * Files and folders → bronze. Streams the walk with a bounded number of files in flight;
 * every `batchSize` files become one commit. Bad inputs become rows of bronze.rejects and
 * never stop the batch. Captions beside images are read once all images are known.
 */
export async function ingest(layout: LakeLayout, roots: string[], options: IngestOptions = {}): Promise<IngestSummary> {
  const settings: IngestSettings = {...INGEST_DEFAULTS, ...stripUndefined(options)}
  const absoluteRoots = roots.map((r) => path.resolve(r))
  await ensureCatalog(layout, options)
  const known = options.rehash ? new Map<string, KnownSource>() : await loadKnownSources(layout, options)
  const run = await beginRun(
    layout,
    'ingest',
    {
      roots: absoluteRoots,
      keep_gps: Boolean(options.keepGps),
      max_pixels: settings.maxPixels,
      max_caption_bytes: settings.maxCaptionBytes,
      source: options.source ?? 'ingest',
    },
    options,
  )
  try {
    // `known` is only looked up here, never learnt into (as watch's is): a one-off run walks each
    // file once, and captions find this run's images in imageByPath, so learning every committed
    // source would only hold a second copy of them (~120 bytes a file) until the run ends.
    const summary = await ingestEntries(layout, run, walkInputs(absoluteRoots), options, known, undefined)
    const warning = await finishCommittedRun(
      layout,
      run,
      {status: summary.status, rowsIn: summary.filesSeen, rowsOut: summary.images.new, rejects: summary.rejects.byReason},
      options,
    )
    return warning ? {...summary, warnings: [warning]} : summary
  } catch (error) {
    await finishRun(layout, run, {status: 'failed', error: (error as Error).message}, options).catch(() => undefined)
    throw error
  }
}

/**
 * Reads, hashes and probes the entries with `concurrency` files in flight, committing every
 * `batchSize` files; caption files are read once the images are known. Leaves the last,
 * partial batch staged for the caller to commit.
 */
async function feedEntries(
  state: IngestState,
  entries: AsyncIterable<WalkEntry> | Iterable<WalkEntry>,
  known: Map<string, KnownSource>,
  concurrency: number,
): Promise<void> {
  const {options, settings} = state
  const captionFiles: Array<{path: string; root: string; kind: CaptionSourceKind}> = []
  // Entries are classified in walk order; skips, rejects and caption files are settled at
  // dispatch (synchronously, so staged rows keep that order) and only images take time.
  async function* classified() {
    for await (const entry of entries) {
      yield {entry, captionKind: entry.kind === 'file' ? await classifyCaptionFile(entry.path) : null}
    }
  }
  await forEachLimited(
    classified(),
    concurrency,
    options.signal,
    async ({entry, captionKind}) => {
      if (entry.kind === 'skipped') {
        state.skippedHidden++
        return
      }
      state.progress.discovered++
      if (entry.kind === 'reject') {
        state.reject({path: entry.path, root: entry.root, reason: entry.reason, message: entry.message})
        state.progress.processed++
        return
      }
      if (captionKind) {
        captionFiles.push({path: entry.path, root: entry.root, kind: captionKind})
        state.progress.processed++
        return
      }
      await state.ingestFile(entry, known.get(entry.path))
    },
    {
      when: () => state.batch.count(SOURCE_ROW) + state.batch.count(REJECT_ROW) >= settings.batchSize,
      run: () => state.commit(),
    },
  )
  if (!options.signal?.aborted) {
    for (const file of captionFiles) {
      if (options.signal?.aborted) break
      await state.ingestCaptions(file.path, file.root, file.kind, known)
    }
  }
}

export interface IngestFilesOptions extends IngestOptions {
  /**
   * What the lake already knows by path, size and modification time. Files found in it are
   * not re-read; sources committed by this call are added to it (so a long-running caller
   * keeps it current without reading the catalog again).
   */
  known?: Map<string, KnownSource>
}

/**
 * The lower-level entry point for long-running callers (`watch`): ingests exactly the given
 * entries (files, with the `root` and `relPath` the caller chose, or rejects to record)
 * under an existing run, which the caller begins and finishes. Commits every `batchSize`
 * files like `ingest` — one commit when they fit in one batch. With `signal` aborted it
 * commits what was complete and returns status 'interrupted'.
 */
export async function ingestFiles(
  layout: LakeLayout,
  run: Run,
  entries: AsyncIterable<WalkEntry> | Iterable<WalkEntry>,
  options: IngestFilesOptions = {},
): Promise<IngestSummary> {
  return ingestEntries(layout, run, entries, options, options.known ?? new Map<string, KnownSource>(), options.known)
}

/** ingestFiles with what it looks files up in (`known`) apart from where it records the sources it commits (`learn`). */
async function ingestEntries(
  layout: LakeLayout,
  run: Run,
  entries: AsyncIterable<WalkEntry> | Iterable<WalkEntry>,
  options: IngestOptions,
  known: Map<string, KnownSource>,
  learn: Map<string, KnownSource> | undefined,
): Promise<IngestSummary> {
  const started = Date.now()
  const settings: IngestSettings = {...INGEST_DEFAULTS, ...stripUndefined(options)}
  const concurrency = options.concurrency ?? Math.max(2, os.availableParallelism() * 2)
  const state = new IngestState(layout, run, settings, options, learn)
  try {
    await feedEntries(state, entries, known, concurrency)
    await state.commit()
    return state.summary(options.signal?.aborted ? 'interrupted' : 'succeeded', started)
  } catch (error) {
    state.batch.discard()
    throw error
  }
}

/** What bronze.sources already says about files: lets re-ingests and rescans skip re-reading them. */
export async function loadKnownSources(layout: LakeLayout, options: CatalogOptions): Promise<Map<string, KnownSource>> {
  const known = new Map<string, KnownSource>()
  await withLakeReader(
    layout,
    async (reader) => {
      known.clear()
      const result = await reader.connection.runAndReadAll(`SELECT path, sha256, bytes, epoch_ms(modified_at) FROM bronze.sources`)
      for (const [p, sha, bytes, modified] of result.getRows()) {
        known.set(String(p), {sha256: String(sha), bytes: Number(bytes), modifiedMs: Number(modified)})
      }
    },
    options,
  )
  return known
}

class IngestState {
  batch: StagedBatch
  readonly commits: number[] = []
  readonly progress: IngestProgress = {discovered: 0, processed: 0, rejected: 0}
  readonly rejectsByReason: Record<string, number> = {}
  /** realpath → sha256 of every image this run read (captions link through it, and through `known` for unchanged files). */
  readonly imageByPath = new Map<string, string>()
  readonly seenImages = new Set<string>()
  /** One reused buffer per file in flight (see fileBuffers.ts). */
  private readonly fileBuffers = new FileBuffers()
  skippedHidden = 0
  imagesNew = 0
  sourcesNew = 0
  captionsFound = 0
  captionsNew = 0
  rejectsNew = 0
  /** Sources staged in the current batch, added to `learn` once it commits. */
  private stagedSources: Array<[string, KnownSource]> = []

  constructor(
    readonly layout: LakeLayout,
    readonly run: Run,
    readonly settings: IngestSettings,
    readonly options: IngestOptions,
    private readonly learn?: Map<string, KnownSource>,
  ) {
    this.batch = new StagedBatch(layout)
  }

  reject(r: {path: string | null; root: string; reason: RejectReason; message: string; sha256?: string; locator?: string}): void {
    this.progress.rejected++
    this.rejectsByReason[r.reason] = (this.rejectsByReason[r.reason] ?? 0) + 1
    this.batch.add(REJECT_ROW, {
      reject_id: keyOf('ingest', r.path, r.reason, r.locator ?? '', r.sha256 ?? ''),
      stage: 'ingest',
      path: r.path,
      root: r.root,
      reason: r.reason,
      message: r.message,
      sha256: r.sha256 ?? null,
      locator: r.locator ?? null,
      rejected_at: new Date().toISOString(),
      run_id: this.run.runId,
    })
    this.options.onReject?.({path: r.path, reason: r.reason, message: r.message})
    this.options.onProgress?.(this.progress)
  }

  async ingestFile(
    entry: {path: string; root: string; relPath: string; size: number; mtimeMs: number},
    known: KnownSource | undefined,
  ): Promise<void> {
    let release: (() => void) | undefined
    try {
      if (isUnchanged(known, entry)) {
        // Not in imageByPath: captions find it in `known` (ingestCaptions), and a re-run over a
        // large folder would hold a second entry per unchanged file.
        this.seenImages.add(known.sha256)
        return
      }
      let bytes: Buffer
      try {
        ;({bytes, release} = await this.fileBuffers.read(entry.path))
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code
        this.reject({
          path: entry.path,
          root: entry.root,
          reason: code === 'ENOENT' ? 'file_vanished' : 'unreadable',
          message:
            code === 'ENOENT'
              ? `ingest: ${entry.path} disappeared before it could be read`
              : `ingest: cannot read ${entry.path} (${code ?? (error as Error).message}); check its permissions`,
        })
        return
      }
      const sha256 = sha256Hex(bytes)
      const sniffed = sniffImageFormat(bytes.subarray(0, SNIFF_HEAD_BYTES), entry.path)
      if ('reject' in sniffed && sniffed.reject === 'empty_file' && this.options.deferIncomplete?.(entry, sniffed.reject)) return
      if ('reject' in sniffed) {
        this.reject({path: entry.path, root: entry.root, reason: sniffed.reject, message: sniffed.message, sha256})
        return
      }
      const complete = checkComplete(sniffed.format, bytes, entry.path)
      if ('reject' in complete && this.options.deferIncomplete?.(entry, complete.reject)) return
      if ('reject' in complete) {
        this.reject({path: entry.path, root: entry.root, reason: complete.reject, message: complete.message, sha256})
        return
      }
      let probe
      try {
        probe = await probeImage(bytes, {
          includeGps: Boolean(this.settings.keepGps),
          maxPixels: this.settings.maxPixels,
          name: entry.path,
        })
      } catch (error) {
        if (!isIngestRejection(error)) throw error
        this.reject({path: entry.path, root: entry.root, reason: error.reason, message: error.message, sha256})
        return
      }
      await putObject(this.layout, sha256, bytes)
      const now = new Date().toISOString()
      this.imageByPath.set(entry.path, sha256)
      if (!this.seenImages.has(sha256)) {
        this.seenImages.add(sha256)
        this.batch.add(IMAGE_ROW, {
          sha256,
          bytes: bytes.length,
          format: probe.format,
          width: probe.width,
          height: probe.height,
          orientation: probe.orientation,
          color_space: probe.colorSpace,
          has_alpha: probe.hasAlpha,
          pages: probe.pages,
          captured_at: probe.capturedAt,
          camera_make: probe.cameraMake,
          camera_model: probe.cameraModel,
          has_gps: probe.hasGps,
          gps_latitude: probe.gpsLatitude,
          gps_longitude: probe.gpsLongitude,
          first_path: entry.path,
          ingested_at: now,
          run_id: this.run.runId,
        })
      }
      this.batch.add(SOURCE_ROW, {
        sha256,
        path: entry.path,
        root: entry.root,
        relative_path: entry.relPath,
        bytes: entry.size,
        modified_at: new Date(entry.mtimeMs).toISOString(),
        source: this.options.source ?? 'ingest',
        seen_at: now,
        run_id: this.run.runId,
      })
      if (this.learn) this.stagedSources.push([entry.path, {sha256, bytes: entry.size, modifiedMs: entry.mtimeMs}])
    } finally {
      release?.() // after everything that used the bytes (probe, putObject) has finished
      this.progress.processed++
      this.options.onProgress?.(this.progress)
    }
  }

  async ingestCaptions(file: string, root: string, kind: CaptionSourceKind, known: Map<string, KnownSource>): Promise<void> {
    for await (const record of parseCaptionFile(file, {maxCaptionBytes: this.settings.maxCaptionBytes}, kind)) {
      if (record.kind === 'reject') {
        this.reject({path: record.sourceFile, root, reason: record.reason, message: record.message, locator: record.locator ?? undefined})
        continue
      }
      const sha256 = this.imageByPath.get(record.imagePath) ?? known.get(record.imagePath)?.sha256
      if (!sha256) {
        this.reject({
          path: record.sourceFile,
          root,
          reason: 'caption_without_image',
          locator: record.locator,
          message: `ingest: caption in ${record.sourceFile} (${record.locator}) names ${record.imagePath}, which is not an ingested image (missing or rejected)`,
        })
        continue
      }
      this.captionsFound++
      this.batch.add(CAPTION_ROW, {
        caption_id: keyOf(sha256, record.sourceKind, record.sourceFile, record.text),
        sha256,
        text: record.text,
        source_kind: record.sourceKind,
        source_file: record.sourceFile,
        locator: record.locator,
        attributes: record.attributes,
        ingested_at: new Date().toISOString(),
        run_id: this.run.runId,
      })
      if (this.batch.count() >= this.settings.batchSize) await this.commit()
    }
  }

  async commit(): Promise<void> {
    if (this.batch.count() === 0) return
    const result = await commitBatch(this.layout, this.batch, {
      operation: this.run.stage,
      runId: this.run.runId,
      summary: {files: this.progress.processed},
      lockTimeoutMs: this.options.lockTimeoutMs,
    })
    if (result.commitId !== null) this.commits.push(result.commitId)
    this.imagesNew += result.added[IMAGE_ROW] ?? 0
    this.sourcesNew += result.added[SOURCE_ROW] ?? 0
    this.captionsNew += result.added[CAPTION_ROW] ?? 0
    this.rejectsNew += result.added[REJECT_ROW] ?? 0
    if (this.learn) for (const [file, source] of this.stagedSources) this.learn.set(file, source)
    this.stagedSources = []
    this.batch = new StagedBatch(this.layout)
  }

  summary(status: 'succeeded' | 'interrupted', started: number): IngestSummary {
    this.batch.discard()
    return {
      runId: this.run.runId,
      status,
      commits: this.commits,
      filesSeen: this.progress.discovered,
      images: {new: this.imagesNew, known: this.seenImages.size - this.imagesNew},
      sources: {new: this.sourcesNew},
      captions: {found: this.captionsFound, new: this.captionsNew},
      rejects: {total: this.progress.rejected, new: this.rejectsNew, byReason: {...this.rejectsByReason}},
      skipped: {hidden: this.skippedHidden},
      seconds: (Date.now() - started) / 1000,
    }
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}
