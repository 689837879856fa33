import {quotedString} from '@duckdb/node-api'
import os from 'node:os'

import {CommitConflictError} from './commit.js'
import {keyOf, sha256Hex} from './hashing.js'
import {cleanCaption, CleanCaptionOptions, CLEANING_VERSION, DEFAULT_CLEAN_CAPTION_OPTIONS} from './captionClean.js'
import {LakeLayout} from './layout.js'
import {FileBuffers} from './fileBuffers.js'
import {DEFAULT_NORMALIZE_OPTIONS, KnownHeader, normalizeImage, NormalizeOptions, NormalizeResult} from './normalize.js'
import {putObject} from './objects.js'
import {NEW_BRONZE_CAPTION, NEW_BRONZE_IMAGES} from './pending.js'
import {hashToHex, PERCEPTUAL_HASH_VERSION} from './perceptualHash.js'
import {LakeReader} from './reader.js'
import {SILVER_CAPTION_SOURCES, SILVER_CAPTIONS, SILVER_IMAGES} from './schema.js'
import {forEachLimited, StageOptions, StageRun, StageSummary} from './stageRun.js'
import {StagedBatch} from './staging.js'

export interface SilverOptions extends StageOptions {
  normalize?: Partial<NormalizeOptions>
  captions?: CleanCaptionOptions
  /** Rebuild silver from all of bronze instead of only what is new. */
  full?: boolean
  /** Images decoded at once (default 2 × cores: sharp's throughput is set by images in flight). */
  concurrency?: number
}

/** The id of a human caption in silver: one row per distinct (image, cleaned text). */
export function humanCaptionId(sha256: string, text: string): string {
  return keyOf('human', sha256, text)
}

/**
 * bronze → silver. Decodes every image bronze has and silver does not (decided by key, not
 * time), writes the normalized derivative to the object store and its measures to
 * silver.images; cleans every bronze caption silver has not seen into silver.captions.
 */
export async function runSilver(layout: LakeLayout, options: SilverOptions = {}): Promise<StageSummary> {
  // No ensureCatalog: a stage reads an existing lake (LAKE_NOT_FOUND otherwise), it never creates one.
  const normalize: NormalizeOptions = {...DEFAULT_NORMALIZE_OPTIONS, ...options.normalize}
  const captionOptions: CleanCaptionOptions = {...DEFAULT_CLEAN_CAPTION_OPTIONS, ...options.captions}
  const params = {
    normalize,
    captions: captionOptions,
    cleaning_version: CLEANING_VERSION,
    perceptual_hash_version: PERCEPTUAL_HASH_VERSION,
    full: Boolean(options.full),
  }
  const {images, captions, snapshot} = await pendingSilverWork(layout, Boolean(options.full), options)
  const replace = options.full ? [SILVER_IMAGES.id, SILVER_CAPTIONS.id, SILVER_CAPTION_SOURCES.id] : []
  const stage = await StageRun.begin(layout, 'silver', params, options, replace)
  // A rebuild replaces silver with what it made from this snapshot: rows another run commits
  // to silver meanwhile (incremental silver, model captions) would be retired with the old
  // ones. Its commit is refused then (rebuildConflict), never those rows dropped.
  if (options.full) stage.unchangedSince = {commitId: snapshot, tables: replace}
  const total = images.length + captions.length
  let done = 0
  const progress = () => {
    done++
    options.onProgress?.(done, total)
  }
  try {
    // A rebuild replaces silver.captions whole: model captions are not silver's to recompute
    // (they cost model time), so they are carried into the new table unchanged.
    if (options.full) await carryModelCaptions(layout, stage.batch, options)
    const originals = new FileBuffers() // one reused buffer per image in flight, as ingest reads
    await forEachLimited(
      images,
      options.concurrency ?? Math.max(2, os.availableParallelism() * 2),
      options.signal,
      async (image) => {
        await normalizeOne(layout, stage, image, normalize, originals)
        progress()
      },
      {when: () => stage.batchDue, run: () => stage.commit()},
    )
    for (const caption of captions) {
      if (options.signal?.aborted) break
      cleanOne(stage, caption, captionOptions)
      progress()
      await stage.maybeCommit()
    }
    return await stage.finish(done)
  } catch (error) {
    return stage.fail(error instanceof CommitConflictError && options.full ? rebuildConflict(error) : error)
  }
}

/**
 * A refused `silver --full` commit. Not retried (unlike gold): the rebuild decodes every image
 * again, and the other writer (typically `watch --then silver`, or `etl run caption`) would
 * likely commit again meanwhile.
 */
function rebuildConflict(error: CommitConflictError): CommitConflictError {
  const {since, commitId, runId} = error.conflict
  return new CommitConflictError(
    error.conflict,
    `silver --full: run ${runId} committed to silver (commit ${commitId}) while this rebuild ran from commit ${since}; replacing silver would have dropped its rows, so the rebuild was not committed`,
    'Run `mlcap etl run silver --full` again when no other silver or caption run is going (pause `mlcap watch --then silver` meanwhile); the rebuild then includes what that run added.',
  )
}

async function carryModelCaptions(layout: LakeLayout, batch: StagedBatch, options: StageOptions): Promise<void> {
  const reader = await LakeReader.open(layout, options)
  try {
    const copied = await reader.connection.runAndReadAll(
      `COPY (SELECT * EXCLUDE (commit_id) FROM silver.captions WHERE source = 'model' ORDER BY caption_id)
         TO ${quotedString(batch.rowsFile(SILVER_CAPTIONS.id))} (FORMAT json)`,
    )
    batch.adoptRowsFile(SILVER_CAPTIONS.id, Number(copied.getRows()[0]?.[0] ?? 0))
  } finally {
    reader.close()
  }
}

/** A bronze image to normalize, with the header ingest recorded (so silver need not read it again). */
interface PendingImage {
  sha256: string
  header: KnownHeader
}

interface BronzeCaption {
  caption_id: string
  sha256: string
  text: string
  source_kind: string
  source_file: string
}

/**
 * Images and captions in bronze that silver has not processed (all of them with `full`),
 * and the commit they were read at (`snapshot`).
 * Captions come in the order bronze committed them: when several clean to one silver
 * caption, the first one processed gives the row its provenance (bronze_caption_id,
 * raw_text, source_kind, source_file), and in commit order that is the earliest found,
 * the same on incremental runs (which see bronze in commit order) and on a --full rebuild.
 */
export async function pendingSilverWork(
  layout: LakeLayout,
  full: boolean,
  options: StageOptions = {},
): Promise<{images: PendingImage[]; captions: BronzeCaption[]; snapshot: number}> {
  const reader = await LakeReader.open(layout, options)
  try {
    const c = reader.connection
    const images = (
      await c.runAndReadAll(
        `SELECT sha256, format, width, height, orientation, pages, color_space, has_alpha
           FROM ${full ? 'bronze.images' : NEW_BRONZE_IMAGES} ORDER BY sha256`,
      )
    )
      .getRows()
      .map(([sha256, format, width, height, orientation, pages, space, hasAlpha]): PendingImage => ({
        sha256: String(sha256),
        header: {format: String(format), width: Number(width), height: Number(height), orientation: orientation === null ? null : Number(orientation), pages: Number(pages), space: String(space), hasAlpha: hasAlpha === true},
      }))
    const captions = (
      await c.runAndReadAll(
        `SELECT caption_id, sha256, text, source_kind, source_file FROM bronze.captions b
         ${full ? '' : `WHERE ${NEW_BRONZE_CAPTION}`}
         ORDER BY commit_id, caption_id`,
      )
    ).getRowObjectsJson() as unknown as BronzeCaption[]
    return {images, captions, snapshot: reader.snapshot.commitId}
  } finally {
    reader.close()
  }
}

async function normalizeOne(
  layout: LakeLayout,
  stage: StageRun,
  {sha256, header}: PendingImage,
  options: NormalizeOptions,
  originals: FileBuffers,
): Promise<void> {
  const now = new Date().toISOString()
  let original: {bytes: Buffer; release: () => void}
  try {
    original = await originals.read(layout.objectPath(sha256))
  } catch (error) {
    stage.reject('object_missing')
    stage.batch.add(SILVER_IMAGES.id, {
      sha256,
      status: 'rejected',
      reason: 'object_missing',
      message: `silver: the original bytes of ${sha256} are missing from the object store (${(error as Error).message}); expected every bronze image there. Ingest its file again (mlcap ingest <file> --rehash), then rebuild silver (mlcap etl run silver --full): an incremental run does not retry this image`,
      processed_at: now,
      run_id: stage.runId,
    })
    return
  }
  let result: NormalizeResult
  try {
    result = await normalizeImage(original.bytes, options, header)
  } finally {
    original.release() // the decode is done with them: the next image may reuse the memory
  }
  if (result.status === 'rejected') {
    stage.reject(result.reason)
    stage.batch.add(SILVER_IMAGES.id, {
      sha256,
      status: 'rejected',
      reason: result.reason,
      message: result.message,
      format: result.original?.format ?? null,
      width: result.original?.width ?? null,
      height: result.original?.height ?? null,
      processed_at: now,
      run_id: stage.runId,
    })
    return
  }
  const normalizedSha = sha256Hex(result.output)
  await putObject(layout, normalizedSha, result.output)
  stage.batch.add(SILVER_IMAGES.id, {
    sha256,
    status: 'ok',
    reason: null,
    message: null,
    format: result.original.format,
    width: result.original.width,
    height: result.original.height,
    normalized_sha256: normalizedSha,
    normalized_format: result.normalized.format,
    normalized_width: result.normalized.width,
    normalized_height: result.normalized.height,
    normalized_bytes: result.normalized.bytes,
    phash: hashToHex(result.phash),
    dhash: hashToHex(result.dhash),
    sharpness: result.sharpness,
    brightness: result.brightness,
    contrast: result.contrast,
    aspect_ratio: result.aspectRatio,
    processed_at: now,
    run_id: stage.runId,
  })
}

function cleanOne(stage: StageRun, caption: BronzeCaption, options: CleanCaptionOptions): void {
  const result = cleanCaption(caption.text, options)
  const now = new Date().toISOString()
  const common = {
    sha256: caption.sha256,
    raw_text: caption.text,
    source: 'human',
    source_kind: caption.source_kind,
    source_file: caption.source_file,
    bronze_caption_id: caption.caption_id,
    cleaning_version: CLEANING_VERSION,
    created_at: now,
    run_id: stage.runId,
  }
  let captionId: string
  if (result.status === 'ok') {
    captionId = humanCaptionId(caption.sha256, result.text)
    stage.batch.add(SILVER_CAPTIONS.id, {
      ...common,
      caption_id: captionId,
      status: 'ok',
      reason: null,
      text: result.text,
      words: result.words,
      tokens: result.tokens,
    })
  } else {
    stage.reject(`caption_${result.reason}`)
    captionId = keyOf('rejected', caption.caption_id)
    stage.batch.add(SILVER_CAPTIONS.id, {
      ...common,
      caption_id: captionId,
      status: 'rejected',
      reason: result.reason,
      message: result.message,
      text: null,
    })
  }
  stage.batch.add(SILVER_CAPTION_SOURCES.id, {
    bronze_caption_id: caption.caption_id,
    caption_id: captionId,
    sha256: caption.sha256,
    status: result.status,
    run_id: stage.runId,
  })
}
