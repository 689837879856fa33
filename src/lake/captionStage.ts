/**
 * The `caption` ETL stage: captions every ok silver image that has no caption from the
 * chosen model with the same settings, into silver.captions (source 'model').
 *
 * "Same settings" is the exact tuple (model id, content hash of the weights, dtype,
 * generation parameters as canonical JSON): the key of the work. A model caption's id is
 * derived from that tuple and the image alone, so two runs with the same settings — one
 * after a kill, or two at once — can only ever add one caption per image (the commit drops
 * keys the table already has). A failed or empty generation is never a caption: it is a
 * `rejected` row with a reason, which also stops the same settings from retrying the image
 * until `retryFailed` asks for it (rejected rows carry an attempt number in their id, so a
 * retry adds a new row, and a successful retry adds the ok row beside the old rejection).
 */
import {readFile} from 'node:fs/promises'

import {keyOf} from './hashing.js'
import {cleanCaption, CleanCaptionOptions, CLEANING_VERSION, DEFAULT_CLEAN_CAPTION_OPTIONS} from './captionClean.js'
import {LakeLayout} from './layout.js'
import {LakeReader} from './reader.js'
import {SILVER_CAPTIONS} from './schema.js'
import {StageOptions, StageRun, StageSummary} from './stageRun.js'
import type {CaptionResult} from '../model/captionEngine.js'
import {generationSettings, openCaptioner, type Captioner} from '../model/captioner.js'
import {resolveCacheDir} from '../model/config.js'
import {invalidModelParameter, MODEL_ERROR_CODES, messageOf} from '../model/errors.js'
import {checkModelFolder} from '../model/modelFiles.js'
import {parseDtype, resolveModel, type ModelDtype, type ResolvedModel} from '../model/registry.js'
import {MAX_BATCH, planWorkers, type PoolPlan} from '../model/workerPool.js'

/** Model options shared by `mlcap caption` and `etl run caption` (see src/model). */
export interface CaptionModelOptions {
  /** Hub id (looked up in the model cache) or model folder. Default: the default model. */
  model?: string
  dtype?: string
  maxNewTokens?: number
  workers?: number
  threadsPerWorker?: number
  /** Model cache folder (default: $MLCAP_MODEL_CACHE, else the user cache folder). */
  cacheDir?: string
}

export interface CaptionStageOptions extends StageOptions, CaptionModelOptions {
  /** Caption again the images whose earlier attempt with the same settings was rejected. */
  retryFailed?: boolean
  /** Cleaning applied to the model's text (the same function and options as silver's). */
  captions?: CleanCaptionOptions
  /** Images handed to the captioner per call (default: 2 batches per worker, at most 64). */
  chunkSize?: number
  /** Commit what is staged at least this often, whatever the batch size (default 30 s). */
  commitEveryMs?: number
}

/** The settings that identify a model's captions (provenance, and the key of the work). */
export interface CaptionSettings {
  modelId: string
  source: ResolvedModel['source']
  path: string
  revision: string
  dtype: ModelDtype
  /** Canonical JSON (sorted keys) of the generation parameters. */
  generation: string
  maxNewTokens: number
  plan: PoolPlan
  cacheDir: string
}

/** JSON with object keys sorted at every level, so equal settings are equal strings. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value)
}

/** One ok model caption per image per settings. */
export function modelCaptionId(sha256: string, s: Pick<CaptionSettings, 'modelId' | 'revision' | 'dtype' | 'generation'>): string {
  return keyOf('model', sha256, s.modelId, s.revision, s.dtype, s.generation)
}

/** A rejected attempt (1, 2, …) of the same settings on an image. */
export function rejectedModelCaptionId(
  sha256: string,
  s: Pick<CaptionSettings, 'modelId' | 'revision' | 'dtype' | 'generation'>,
  attempt: number,
): string {
  return keyOf('model-rejected', sha256, s.modelId, s.revision, s.dtype, s.generation, String(attempt))
}

/**
 * Validate the options and find the model (MODEL_NOT_FOUND / MODEL_CORRUPT before any work
 * starts); the content hash of the weights is what `revision` records.
 */
export async function resolveCaptionSettings(options: CaptionModelOptions): Promise<CaptionSettings> {
  const cacheDir = resolveCacheDir(options.cacheDir)
  const {maxNewTokens} = generationSettings(options)
  const plan = planWorkers({workers: options.workers, threadsPerWorker: options.threadsPerWorker})
  const resolved = resolveModel(options.model, {cacheDir})
  const dtype = parseDtype(options.dtype, resolved.defaultDtype)
  const checked = await checkModelFolder(resolved, dtype)
  return {
    modelId: resolved.id,
    source: resolved.source,
    path: checked.dir,
    revision: checked.contentHash,
    dtype,
    // The names Transformers.js' generate() takes; doSample is always false (greedy).
    // Greedy (num_beams 1, no sampling) is the only decoding the runtime does.
    generation: canonicalJson({max_new_tokens: maxNewTokens, num_beams: 1, do_sample: false}),
    maxNewTokens,
    plan,
    cacheDir,
  }
}

interface PendingImage {
  sha256: string
  normalized_sha256: string
  /** Rejected attempts with these settings so far. */
  attempts: number
}

/** ok silver images without an ok model caption of these settings (nor a rejected one, unless retrying). */
export async function pendingCaptionWork(
  layout: LakeLayout,
  settings: CaptionSettings,
  retryFailed: boolean,
  options: StageOptions = {},
): Promise<PendingImage[]> {
  const reader = await LakeReader.open(layout, options)
  try {
    const rows = (
      await reader.connection.runAndReadAll(
        `WITH mine AS (
           SELECT sha256, status FROM silver.captions
            WHERE source = 'model' AND model_id = $model AND model_revision = $revision
              AND model_dtype = $dtype AND CAST(generation AS VARCHAR) = $generation)
         SELECT i.sha256, i.normalized_sha256,
                (SELECT count(*) FROM mine m WHERE m.sha256 = i.sha256 AND m.status = 'rejected') AS attempts
           FROM silver.images i
          WHERE i.status = 'ok'
            AND NOT EXISTS (SELECT 1 FROM mine m WHERE m.sha256 = i.sha256 AND (m.status = 'ok' OR NOT $retry))
          ORDER BY i.sha256`,
        {
          model: settings.modelId,
          revision: settings.revision,
          dtype: settings.dtype,
          generation: settings.generation,
          retry: retryFailed,
        },
      )
    ).getRowObjectsJson() as unknown as PendingImage[]
    for (const r of rows) r.attempts = Number(r.attempts)
    return rows
  } finally {
    reader.close()
  }
}

/** Model error codes → reject reasons of silver.captions. */
const REASON_OF: Readonly<Record<string, string>> = Object.freeze({
  [MODEL_ERROR_CODES.imageDecodeFailed]: 'undecodable',
  [MODEL_ERROR_CODES.emptyCaption]: 'empty',
  [MODEL_ERROR_CODES.generationFailed]: 'generation_failed',
  [MODEL_ERROR_CODES.workerFailed]: 'generation_failed',
})

type Outcome =
  | {kind: 'ok'; text: string}
  | {kind: 'rejected'; reason: string; message: string; rawText: string | null}
  /** Never attempted (the captioner was closed by an interrupt): stays pending. */
  | {kind: 'skipped'}

/**
 * silver.images (ok) → silver.captions (source 'model'). See the module comment for the
 * key; `batchSize` rows per commit, and a commit at least every `commitEveryMs`, so a
 * killed run loses at most the work since the last commit. On abort: no new images are
 * handed to the model, images already being generated finish and are committed, the
 * workers are closed (never terminated inside onnxruntime).
 */
export async function runCaptionStage(layout: LakeLayout, options: CaptionStageOptions = {}): Promise<StageSummary> {
  // No ensureCatalog: a stage reads an existing lake (LAKE_NOT_FOUND otherwise), it never creates one.
  const settings = await resolveCaptionSettings(options)
  const retryFailed = Boolean(options.retryFailed)
  const cleaning: CleanCaptionOptions = {...DEFAULT_CLEAN_CAPTION_OPTIONS, ...options.captions}
  const chunkSize = options.chunkSize ?? Math.min(64, MAX_BATCH * settings.plan.workers * 2)
  if (!Number.isInteger(chunkSize) || chunkSize < 1) throw invalidModelParameter('chunkSize', 'a positive integer', options.chunkSize)
  const commitEveryMs = options.commitEveryMs ?? 30_000
  let pending = await pendingCaptionWork(layout, settings, retryFailed, options)
  const params = {
    model: settings.modelId,
    model_source: settings.source,
    model_path: settings.path,
    revision: settings.revision,
    dtype: settings.dtype,
    generation: JSON.parse(settings.generation) as unknown,
    workers: settings.plan.workers,
    threads_per_worker: settings.plan.threadsPerWorker,
    retry_failed: retryFailed,
    captions: cleaning,
    cleaning_version: CLEANING_VERSION,
  }
  const stage = await StageRun.begin(layout, 'caption', params, options)
  if (pending.length === 0) return stage.finish(0)

  let captioner: Captioner | undefined
  let closing: Promise<void> | undefined
  const onAbort = () => {
    closing ??= captioner?.close()
  }
  try {
    captioner = await openCaptioner({
      model: settings.path,
      dtype: settings.dtype,
      maxNewTokens: settings.maxNewTokens,
      workers: settings.plan.workers,
      threadsPerWorker: settings.plan.threadsPerWorker,
      cacheDir: settings.cacheDir,
    })
    if (captioner.info.contentHash !== settings.revision) {
      // The files changed between the check and the load: the work is that of the new weights.
      settings.revision = captioner.info.contentHash
      pending = await pendingCaptionWork(layout, settings, retryFailed, options)
    }
    options.signal?.addEventListener('abort', onAbort, {once: true})
    if (options.signal?.aborted) onAbort()

    const total = pending.length
    let next = 0
    let done = 0
    let lastCommit = Date.now()
    const inFlight: Array<Promise<Outcome[]>> = []
    const launch = () => {
      const chunk = pending.slice(next, next + chunkSize)
      next += chunk.length
      const work = captionChunk(layout, captioner!, chunk)
      work.catch(() => undefined) // awaited below, in order; this only keeps a rejection from being unhandled meanwhile
      inFlight.push(work)
      return chunk
    }
    const chunks: PendingImage[][] = []
    for (;;) {
      // Two chunks in flight: the workers always have the next one queued while results are staged and committed.
      while (inFlight.length < 2 && next < total && !options.signal?.aborted) chunks.push(launch())
      if (inFlight.length === 0) break
      const outcomes = await inFlight.shift()!
      const chunk = chunks.shift()!
      const now = new Date().toISOString()
      chunk.forEach((image, k) => {
        const outcome = outcomes[k]!
        if (outcome.kind === 'skipped') return
        stageCaption(stage, image, outcome, settings, cleaning, now)
        done++
        options.onProgress?.(done, total)
      })
      if (stage.batchDue || (stage.batch.count() > 0 && Date.now() - lastCommit >= commitEveryMs)) {
        await stage.commit()
        lastCommit = Date.now()
      }
    }
    await closeCaptioner()
    return await stage.finish(done)
  } catch (error) {
    await closeCaptioner().catch(() => undefined) // the original error is what the caller needs
    return stage.fail(error)
  } finally {
    options.signal?.removeEventListener('abort', onAbort)
  }

  async function closeCaptioner(): Promise<void> {
    closing ??= captioner?.close()
    await closing
  }
}

/** Read the derivatives of a chunk and caption them; one outcome per image, in order. */
async function captionChunk(layout: LakeLayout, captioner: Captioner, chunk: PendingImage[]): Promise<Outcome[]> {
  const outcomes: Array<Outcome | undefined> = new Array(chunk.length)
  const inputs: Uint8Array[] = []
  const at: number[] = []
  await Promise.all(
    chunk.map(async (image, k) => {
      try {
        inputs[k] = await readFile(layout.objectPath(image.normalized_sha256))
      } catch (error) {
        outcomes[k] = {
          kind: 'rejected',
          reason: 'object_missing',
          message: `caption: the normalized image ${image.normalized_sha256} of ${image.sha256} is missing from the object store (${messageOf(error)}); expected the derivative silver wrote. Run \`mlcap etl run silver --full\` to rebuild it, then \`mlcap etl run caption --retry-failed\`.`,
          rawText: null,
        }
      }
    }),
  )
  const present = chunk.map((_, k) => k).filter((k) => outcomes[k] === undefined)
  for (const k of present) at.push(k)
  const results: CaptionResult[] = present.length > 0 ? await captioner.caption(present.map((k) => inputs[k]!)) : []
  results.forEach((r, j) => {
    const k = at[j]!
    if ('caption' in r) outcomes[k] = {kind: 'ok', text: r.caption}
    else if (r.error.code === MODEL_ERROR_CODES.closed) outcomes[k] = {kind: 'skipped'}
    else {
      outcomes[k] = {
        kind: 'rejected',
        reason: REASON_OF[r.error.code] ?? 'generation_failed',
        message: `caption: ${r.error.message.replace(/^model: /, '')} (${r.error.code})`,
        rawText: null,
      }
    }
  })
  return outcomes as Outcome[]
}

function stageCaption(
  stage: StageRun,
  image: PendingImage,
  outcome: Exclude<Outcome, {kind: 'skipped'}>,
  settings: CaptionSettings,
  cleaning: CleanCaptionOptions,
  now: string,
): void {
  const common = {
    sha256: image.sha256,
    source: 'model',
    source_kind: 'model',
    source_file: null,
    bronze_caption_id: null,
    model_id: settings.modelId,
    model_revision: settings.revision,
    model_dtype: settings.dtype,
    generation: JSON.parse(settings.generation) as unknown,
    cleaning_version: CLEANING_VERSION,
    created_at: now,
    run_id: stage.runId,
  }
  let rejected: {reason: string; message: string; rawText: string | null}
  if (outcome.kind === 'ok') {
    // The same cleaning as human captions get in silver: one function, everywhere.
    const clean = cleanCaption(outcome.text, cleaning)
    if (clean.status === 'ok') {
      stage.batch.add(SILVER_CAPTIONS.id, {
        ...common,
        caption_id: modelCaptionId(image.sha256, settings),
        status: 'ok',
        reason: null,
        message: null,
        text: clean.text,
        raw_text: outcome.text,
        words: clean.words,
        tokens: clean.tokens,
      })
      return
    }
    rejected = {reason: clean.reason, message: clean.message.replace(/^silver: /, 'caption: model '), rawText: outcome.text}
  } else {
    rejected = outcome
  }
  stage.reject(rejected.reason)
  stage.batch.add(SILVER_CAPTIONS.id, {
    ...common,
    caption_id: rejectedModelCaptionId(image.sha256, settings, image.attempts + 1),
    status: 'rejected',
    reason: rejected.reason,
    message: rejected.message,
    text: null,
    raw_text: rejected.rawText,
    words: null,
    tokens: null,
  })
}
