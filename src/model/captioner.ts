/**
 * The captioning API: open a model once, caption many images in worker threads, close.
 */

import type {CaptionResult, GenerationSettings} from './captionEngine.js'
import {resolveCacheDir} from './config.js'
import {invalidModelParameter} from './errors.js'
import {checkModelFolder} from './modelFiles.js'
import {parseDtype, resolveModel, type ModelDtype} from './registry.js'
import {planWorkers, WorkerPool} from './workerPool.js'

export interface CaptionerOptions {
  /** Hub id (looked up in the cache) or model folder path. Default: the registry's default model. */
  model?: string
  /** ONNX weight variant (fp32, q8, ...). Default: the registry's choice for the model, else fp32. */
  dtype?: string
  /** Most tokens generated per caption. Default 20. */
  maxNewTokens?: number
  /** Beam width. Only 1 (greedy) is supported by Transformers.js 4.3 (wider beams are silently greedy). */
  numBeams?: number
  /** Worker threads, each with its own model copy. Default: see planWorkers. */
  workers?: number
  /** onnxruntime intra-op threads per worker. Default: see planWorkers. */
  threadsPerWorker?: number
  /** Model cache folder. Default: see resolveCacheDir. */
  cacheDir?: string
}

/** Everything that determined the captions: recorded as provenance of model captions. */
export interface CaptionerInfo {
  /** Hub id, or the absolute folder path for a local model. */
  model: string
  source: 'hub' | 'folder'
  /** Absolute folder the model was loaded from. */
  path: string
  /** sha256 over every loaded file (path + sha256 of its bytes): identifies the exact weights. */
  contentHash: string
  dtype: ModelDtype
  task: 'image-to-text'
  generation: GenerationSettings & {doSample: false}
  workers: number
  threadsPerWorker: number
}

export type CaptionOutcome = CaptionResult

export interface Captioner {
  readonly info: CaptionerInfo
  /**
   * Caption encoded images (JPEG, PNG, WebP, ...). One result per input, in input order:
   * `{caption, ms, tokens}` or `{error: {code, message}}` (undecodable image, failed or
   * empty generation) — a failure is never a caption string.
   */
  caption(inputs: ReadonlyArray<Uint8Array>): Promise<CaptionResult[]>
  /** Terminate the workers. Idempotent; captions still pending resolve as MODEL_CLOSED errors. */
  close(): Promise<void>
}

export const DEFAULT_MAX_NEW_TOKENS = 20

/** The checked generation settings of `options` (UsageError for a bad maxNewTokens or numBeams). */
export function generationSettings(options: Pick<CaptionerOptions, 'maxNewTokens' | 'numBeams'>): GenerationSettings {
  const maxNewTokens = options.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1 || maxNewTokens > 1024) {
    throw invalidModelParameter('maxNewTokens', 'an integer from 1 to 1024', options.maxNewTokens)
  }
  const numBeams = options.numBeams ?? 1
  if (numBeams !== 1) {
    throw invalidModelParameter(
      'numBeams',
      '1 (Transformers.js 4.3 generates greedily; wider beams would silently be greedy)',
      options.numBeams,
      'Leave numBeams at 1.',
    )
  }
  return {maxNewTokens, numBeams}
}

/**
 * Resolve and check the model, start the workers and wait until each has loaded it.
 * Throws UsageError for bad options, MODEL_NOT_FOUND, MODEL_CORRUPT, MODEL_UNSUPPORTED.
 * Never downloads: see pullModel.
 */
export async function openCaptioner(options: CaptionerOptions = {}): Promise<Captioner> {
  const cacheDir = resolveCacheDir(options.cacheDir)
  const generation = generationSettings(options)
  const plan = planWorkers({workers: options.workers, threadsPerWorker: options.threadsPerWorker})
  const resolved = resolveModel(options.model, {cacheDir})
  const dtype = parseDtype(options.dtype, resolved.defaultDtype)
  const checked = await checkModelFolder(resolved, dtype)
  const pool = await WorkerPool.start({dir: checked.dir, dtype, cacheDir, generation, eosTokenIds: checked.eosTokenIds}, plan)
  const info: CaptionerInfo = Object.freeze({
    model: resolved.id,
    source: resolved.source,
    path: checked.dir,
    contentHash: checked.contentHash,
    dtype,
    task: 'image-to-text' as const,
    generation: Object.freeze({...generation, doSample: false as const}),
    workers: plan.workers,
    threadsPerWorker: plan.threadsPerWorker,
  })
  return {
    info,
    async caption(inputs) {
      if (!Array.isArray(inputs)) throw invalidModelParameter('inputs', 'an array of image buffers', inputs)
      inputs.forEach((b, i) => {
        if (!(b instanceof Uint8Array)) throw invalidModelParameter(`inputs[${i}]`, 'a Buffer or Uint8Array of image bytes', b)
      })
      return pool.run([...inputs])
    },
    close: () => pool.close(),
  }
}

