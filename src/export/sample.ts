/**
 * The input contract of every export writer: one deterministic, ordered stream of
 * samples (one image with its captions). `validateSample` checks a sample at the edge
 * so that writers can trust it; `selectedCaptions` applies the `captions` option.
 */
import {invalidParameter, type UsageError} from '../lake/errors.js'
import type {ContentCheck} from './hashThread.js'

export const IMAGE_EXTS = Object.freeze(['jpg', 'png', 'webp', 'gif', 'tiff', 'avif', 'heif'] as const)
export const SPLITS = Object.freeze(['train', 'val', 'test'] as const)
export const CAPTION_MODES = Object.freeze(['first', 'all'] as const)

export type ImageExt = (typeof IMAGE_EXTS)[number]
export type Split = (typeof SPLITS)[number]
export type CaptionMode = (typeof CAPTION_MODES)[number]

export interface ExportCaption {
  captionId: string
  text: string
  source: string
}

export interface ExportSample {
  /** Stable sample key, e.g. the first 16 hex digits of sha256; unique within an export. */
  key: string
  /** SHA-256 of `image`, lower-case hex. */
  sha256: string
  /**
   * Encoded image bytes, written out unchanged. Valid until the writer's `add` returns: the
   * sample stream may reuse this memory for the next sample, so a writer that keeps the bytes
   * longer copies them (hf writes them before add returns; see streamFirstColumn).
   */
  image: Buffer
  imageExt: ImageExt
  split: Split
  /** At least one, in a deterministic order; the first is "the" caption. */
  captions: ExportCaption[]
  width: number
  height: number
  attributes?: Record<string, unknown>
}

/** Keys become file names and WebDataset groups on the first dot: no dots, no slashes. */
const KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/
const SHA256_PATTERN = /^[0-9a-f]{64}$/

/** invalidParameter, with this subsystem's prefix and a next step. */
export function exportParameterError(name: string, expected: string, received: unknown, hint?: string): UsageError {
  const error = invalidParameter(name, expected, received)
  error.message = `export: ${error.message}${hint ? `; ${hint}` : ''}`
  return error
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

function sampleField(sample: ExportSample, index: number, field: string): string {
  return `sample #${index}${typeof sample?.key === 'string' ? ` (key ${JSON.stringify(sample.key)})` : ''} ${field}`
}

/**
 * Throws a UsageError naming the sample (by position and key), the field, what was expected
 * and what was received. With `verifyImages`, the image's bytes are checked against `sha256`
 * where the writer writes them (imageCheck), so the export never labels bytes with the wrong hash.
 */
export function validateSample(sample: ExportSample, index: number): void {
  const at = (field: string) => sampleField(sample, index, field)
  const fix = 'fix the sample stream given to writeExport'
  if (typeof sample !== 'object' || sample === null) throw exportParameterError(`sample #${index}`, 'an ExportSample object', sample, fix)
  if (typeof sample.key !== 'string' || !KEY_PATTERN.test(sample.key)) {
    throw exportParameterError(at('key'), '1-128 characters of [A-Za-z0-9_-] starting with a letter or digit (it becomes a file name)', sample.key, fix)
  }
  if (typeof sample.sha256 !== 'string' || !SHA256_PATTERN.test(sample.sha256)) {
    throw exportParameterError(at('sha256'), '64 lower-case hex digits', sample.sha256, fix)
  }
  if (!(sample.image instanceof Uint8Array) || sample.image.length === 0) {
    throw exportParameterError(at('image'), 'a non-empty Buffer of encoded image bytes', sample.image, fix)
  }
  if (!(IMAGE_EXTS as readonly string[]).includes(sample.imageExt)) {
    throw exportParameterError(at('imageExt'), `one of ${IMAGE_EXTS.join(', ')}`, sample.imageExt, fix)
  }
  if (!(SPLITS as readonly string[]).includes(sample.split)) {
    throw exportParameterError(at('split'), `one of ${SPLITS.join(', ')}`, sample.split, fix)
  }
  if (!Array.isArray(sample.captions) || sample.captions.length === 0) {
    throw exportParameterError(at('captions'), 'a non-empty array of captions', sample.captions, fix)
  }
  sample.captions.forEach((caption, i) => {
    if (!isPlainObject(caption) || typeof caption.captionId !== 'string' || caption.captionId === '' || typeof caption.text !== 'string' || typeof caption.source !== 'string') {
      throw exportParameterError(at(`captions[${i}]`), '{captionId: non-empty string, text: string, source: string}', JSON.stringify(caption), fix)
    }
  })
  for (const field of ['width', 'height'] as const) {
    const value = sample[field]
    if (!Number.isInteger(value) || value <= 0 || value > 2 ** 31 - 1) throw exportParameterError(at(field), 'a positive 32-bit integer', value, fix)
  }
  if (sample.attributes !== undefined && !isPlainObject(sample.attributes)) {
    throw exportParameterError(at('attributes'), 'a plain object or undefined', sample.attributes, fix)
  }
}

/** The captions an export carries for this sample: the first one, or all of them in order. */
export function selectedCaptions(sample: ExportSample, mode: CaptionMode): ExportCaption[] {
  return mode === 'all' ? sample.captions : sample.captions.slice(0, 1)
}

/** The caption columns of a row-per-image format: `text` + `caption_id` (captions=first) or the `captions` + `caption_ids` lists (all). */
export function captionColumns(sample: ExportSample, mode: CaptionMode): {text: string; caption_id: string} | {captions: string[]; caption_ids: string[]} {
  const selected = selectedCaptions(sample, mode)
  return mode === 'all'
    ? {captions: selected.map((caption) => caption.text), caption_ids: selected.map((caption) => caption.captionId)}
    : {text: selected[0].text, caption_id: selected[0].captionId}
}

/**
 * What an exported image must hash to, when the export verifies images (`verifyImages`):
 * writers pass it with the image bytes to FileSink or writeNewFile, which verify it.
 */
export function imageCheck(sample: ExportSample, options: {verifyImages: boolean}): ContentCheck | undefined {
  return options.verifyImages ? {sha256: sample.sha256, label: `the image of sample ${JSON.stringify(sample.key)}`} : undefined
}

/** The image's file name inside an export: `<key>.<ext>`. */
export function imageFileName(sample: ExportSample): string {
  return `${sample.key}.${sample.imageExt}`
}
