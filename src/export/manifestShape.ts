/**
 * The shape a parsed manifest.json must have before verify uses anything in it. mlcap
 * wrote it, but the folder may since have been edited, damaged or assembled by hand: a
 * field that is missing or of the wrong type is reported here, naming the field, what it
 * holds and what was expected, instead of surfacing later as a TypeError. File paths must
 * be plain relative paths inside the export folder, so that no entry can make verify read,
 * or report on, a file outside it.
 */
import {MlcapError} from '../lake/errors.js'
import {CAPTION_MODES, isPlainObject, SPLITS} from './sample.js'
import type {ExportManifest} from './manifest.js'

const SHA256_PATTERN = /^[0-9a-f]{64}$/

export const DAMAGED_HINT = 'the export was modified or damaged: copy it again from a good copy, or export again'

export function invalidManifest(manifestPath: string, problem: string, expected: string): MlcapError {
  return new MlcapError('EXPORT_MANIFEST_INVALID', `export: ${manifestPath}: ${problem}; expected ${expected}`, {hint: DAMAGED_HINT})
}

/** A value as the message shows it: short JSON, or "missing". */
function shown(value: unknown): string {
  if (value === undefined) return 'missing'
  const json = JSON.stringify(value)
  const kind = Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value === 'object' ? 'an object' : `a ${typeof value}`
  return `${json.length > 80 ? `${json.slice(0, 77)}...` : json} (${kind})`
}

/**
 * Why `path` is not a plain relative path inside the export folder, or null when it is.
 * "\" is refused as a Windows separator: mlcap never writes one (keys are [A-Za-z0-9_-]).
 */
function pathProblem(path: string): string | null {
  if (path.startsWith('/') || /^[A-Za-z]:/.test(path)) return 'is absolute'
  if (path.split(/[/\\]/).includes('..')) return 'leads outside the export folder'
  if (path.includes('\\') || path.includes('\0') || path.split('/').some((part) => part === '' || part === '.')) {
    return 'is not a plain relative path'
  }
  return null
}

function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0
}

/** Throws EXPORT_MANIFEST_INVALID for the first field of `parsed` that is not as mlcap writes it. */
export function checkManifestShape(parsed: unknown, manifestPath: string): ExportManifest {
  const fail = (field: string, value: unknown, expected: string) => invalidManifest(manifestPath, `${field} is ${shown(value)}`, expected)
  if (!isPlainObject(parsed)) throw fail('the manifest', parsed, 'a JSON object {mlcap_version, format, options, created_from, counts, files}')
  for (const field of ['mlcap_version', 'format'] as const) {
    if (typeof parsed[field] !== 'string' || parsed[field] === '') throw fail(field, parsed[field], 'a non-empty string')
  }
  for (const field of ['options', 'created_from'] as const) {
    if (!isPlainObject(parsed[field])) throw fail(field, parsed[field], 'a JSON object')
  }
  const captions = (parsed.options as Record<string, unknown>).captions
  if (!(CAPTION_MODES as readonly unknown[]).includes(captions)) throw fail('options.captions', captions, `one of ${CAPTION_MODES.join(', ')}`)

  const counts = parsed.counts
  if (!isPlainObject(counts)) throw fail('counts', counts, 'a JSON object {samples, captions, splits}')
  const countFields = (object: Record<string, unknown>, prefix: string) => {
    for (const field of ['samples', 'captions']) {
      if (!isCount(object[field])) throw fail(`${prefix}.${field}`, object[field], 'a whole number >= 0')
    }
  }
  countFields(counts, 'counts')
  if (!isPlainObject(counts.splits)) throw fail('counts.splits', counts.splits, `a JSON object with ${SPLITS.join(', ')}`)
  for (const split of Object.keys(counts.splits)) {
    if (!(SPLITS as readonly string[]).includes(split)) throw invalidManifest(manifestPath, `counts.splits has an unknown split ${JSON.stringify(split)}`, `only ${SPLITS.join(', ')}`)
  }
  for (const split of SPLITS) {
    const value = counts.splits[split]
    if (!isPlainObject(value)) throw fail(`counts.splits.${split}`, value, 'a JSON object {samples, captions}')
    countFields(value, `counts.splits.${split}`)
  }

  const files = parsed.files
  if (!Array.isArray(files)) throw fail('files', files, 'an array of {path, bytes, sha256}')
  files.forEach((file: unknown, index) => {
    const at = `files[${index}]`
    if (!isPlainObject(file)) throw fail(at, file, 'a JSON object {path, bytes, sha256}')
    if (typeof file.path !== 'string' || file.path === '') throw fail(`${at}.path`, file.path, 'a non-empty string')
    const problem = pathProblem(file.path)
    if (problem !== null) {
      throw invalidManifest(manifestPath, `${at}.path ${JSON.stringify(file.path)} ${problem}`, 'a relative path inside the export folder, "/"-separated, without "." or ".." parts (e.g. "train/00000.tar")')
    }
    if (!isCount(file.bytes)) throw fail(`${at}.bytes`, file.bytes, 'a whole number >= 0')
    if (typeof file.sha256 !== 'string' || !SHA256_PATTERN.test(file.sha256)) throw fail(`${at}.sha256`, file.sha256, '64 lower-case hex digits')
  })
  return parsed as unknown as ExportManifest
}
