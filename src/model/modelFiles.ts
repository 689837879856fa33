/**
 * Checks a model folder before any worker loads it, so that a missing, truncated or
 * malformed file is reported by name (MODEL_CORRUPT) instead of as a runtime's internal
 * message, and computes the content hash recorded as the model's provenance.
 */
import {createHash} from 'node:crypto'
import {open, readFile, readdir, stat} from 'node:fs/promises'
import path from 'node:path'
import {sha256OfFile} from '../lake/hashing.js'
import {DTYPE_SUFFIX, type ModelDtype, type ResolvedModel} from './registry.js'
import {messageOf, modelCorrupt, modelNotFound, modelUnsupported} from './errors.js'

export interface ModelFile {
  /** Path relative to the model folder, with `/` separators. */
  path: string
  size: number
}

export interface CheckedModel {
  dir: string
  dtype: ModelDtype
  /** Files the captioner loads, sorted by path. */
  files: ModelFile[]
  /** sha256 over the (path, sha256) of every loaded file: identifies the exact weights. */
  contentHash: string
  /** Decoder's end-of-sequence token id(s), from generation_config.json or config.json. */
  eosTokenIds: number[]
}

const JSON_FILES = ['config.json', 'preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json'] as const
const OPTIONAL_JSON_FILES = ['generation_config.json'] as const

export function onnxFiles(dtype: ModelDtype): string[] {
  const suffix = DTYPE_SUFFIX[dtype]
  return [`onnx/encoder_model${suffix}.onnx`, `onnx/decoder_model_merged${suffix}.onnx`]
}

/** Which dtypes have both ONNX files in `dir` (for error messages). */
export async function availableDtypes(dir: string): Promise<ModelDtype[]> {
  let names: string[]
  try {
    names = await readdir(path.join(dir, 'onnx'))
  } catch {
    return [] // no onnx folder at all
  }
  return (Object.keys(DTYPE_SUFFIX) as ModelDtype[]).filter((d) =>
    onnxFiles(d).every((f) => names.includes(path.basename(f))),
  )
}

async function fileSize(file: string): Promise<number | undefined> {
  try {
    const s = await stat(file)
    return s.isFile() ? s.size : undefined
  } catch {
    return undefined // missing
  }
}

async function readJson(dir: string, name: string): Promise<Record<string, unknown>> {
  const file = path.join(dir, name)
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    throw modelCorrupt(file, `cannot be read (${messageOf(error)})`, error)
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw modelCorrupt(file, `is not valid JSON (${messageOf(error)})`, error)
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw modelCorrupt(file, 'does not hold a JSON object')
  }
  return value as Record<string, unknown>
}

function readVarint(buf: Uint8Array, pos: number): [value: number, next: number] | undefined {
  let value = 0
  let scale = 1
  for (let i = pos; i < buf.length && i < pos + 10; i++) {
    value += (buf[i]! & 0x7f) * scale
    scale *= 128
    if ((buf[i]! & 0x80) === 0) return [value, i + 1]
  }
  return undefined
}

/**
 * Walk the top-level fields of an ONNX ModelProto without reading the whole file: every
 * field must end inside the file, and the graph (field 7) must be present. A truncated
 * download or copy fails this check (its graph field claims more bytes than exist).
 */
export async function checkOnnxStructure(file: string): Promise<void> {
  const handle = await open(file, 'r')
  try {
    const {size} = await handle.stat()
    const head = new Uint8Array(16)
    let pos = 0
    let hasGraph = false
    let fields = 0
    while (pos < size) {
      const {bytesRead} = await handle.read(head, 0, head.length, pos)
      const view = head.subarray(0, bytesRead)
      const key = readVarint(view, 0)
      if (!key) throw modelCorrupt(file, `is not a valid ONNX model (unreadable field at byte ${pos})`)
      const [tag, afterKey] = key
      const field = Math.floor(tag / 8)
      const wire = tag % 8
      let next: number
      if (wire === 0) {
        const v = readVarint(view, afterKey)
        if (!v) throw modelCorrupt(file, `is not a valid ONNX model (bad varint at byte ${pos})`)
        next = pos + v[1]
      } else if (wire === 2) {
        const len = readVarint(view, afterKey)
        if (!len) throw modelCorrupt(file, `is not a valid ONNX model (bad length at byte ${pos})`)
        next = pos + len[1] + len[0]
      } else if (wire === 1) {
        next = pos + afterKey + 8
      } else if (wire === 5) {
        next = pos + afterKey + 4
      } else {
        throw modelCorrupt(file, `is not a valid ONNX model (wire type ${wire} at byte ${pos})`)
      }
      if (field === 0 || next > size) {
        throw modelCorrupt(file, `is truncated or not an ONNX model (${size} bytes; field ${field} at byte ${pos} ends at byte ${next})`)
      }
      if (field === 7 && wire === 2) hasGraph = true
      pos = next
      fields++
    }
    if (!hasGraph) throw modelCorrupt(file, `is not an ONNX model (${size} bytes, ${fields} fields, no graph)`)
  } finally {
    await handle.close()
  }
}

function tokenIds(value: unknown): number[] {
  if (typeof value === 'number' && Number.isInteger(value)) return [value]
  if (Array.isArray(value)) return value.filter((v): v is number => typeof v === 'number' && Number.isInteger(v))
  return []
}

const memo = new Map<string, CheckedModel>()

/**
 * Check that `model.dir` holds a complete vision-encoder-decoder model for `dtype`.
 * Throws MODEL_NOT_FOUND (no folder), MODEL_CORRUPT (a named file missing, truncated or
 * malformed) or MODEL_UNSUPPORTED (not an image-captioning encoder-decoder).
 * Results are memoized per folder, dtype and file sizes/mtimes.
 */
export async function checkModelFolder(model: ResolvedModel, dtype: ModelDtype): Promise<CheckedModel> {
  const {dir} = model
  const dirStat = await stat(dir).catch(() => undefined)
  if (!dirStat?.isDirectory()) throw modelNotFound(model.id, dir, model.source === 'folder')

  const wanted = [...JSON_FILES, ...OPTIONAL_JSON_FILES, ...onnxFiles(dtype)]
  const stats = await Promise.all(wanted.map((f) => stat(path.join(dir, f)).catch(() => undefined)))
  const key = JSON.stringify([dir, dtype, stats.map((s) => (s ? [s.size, s.mtimeMs] : null))])
  const cached = memo.get(key)
  if (cached) return cached

  const files: ModelFile[] = []
  for (const name of JSON_FILES) {
    const size = await fileSize(path.join(dir, name))
    if (size === undefined) throw modelCorrupt(path.join(dir, name), 'is missing')
    files.push({path: name, size})
  }
  for (const name of OPTIONAL_JSON_FILES) {
    const size = await fileSize(path.join(dir, name))
    if (size !== undefined) files.push({path: name, size})
  }
  for (const name of onnxFiles(dtype)) {
    const size = await fileSize(path.join(dir, name))
    if (size === undefined) {
      const present = await availableDtypes(dir)
      const which = present.length > 0 ? `this folder has dtype ${present.join(', ')}` : 'this folder has no complete ONNX pair'
      throw modelCorrupt(path.join(dir, name), `is missing (needed for dtype ${dtype}; ${which})`)
    }
    files.push({path: name, size})
  }

  const parsed = new Map<string, Record<string, unknown>>()
  for (const f of files) if (f.path.endsWith('.json')) parsed.set(f.path, await readJson(dir, f.path))
  const config = parsed.get('config.json')!
  if (typeof config.model_type !== 'string') {
    throw modelCorrupt(path.join(dir, 'config.json'), 'has no "model_type"')
  }
  if (config.model_type !== 'vision-encoder-decoder') throw modelUnsupported(path.join(dir, 'config.json'), config.model_type)
  const decoder = config.decoder
  if (decoder === null || typeof decoder !== 'object') {
    throw modelCorrupt(path.join(dir, 'config.json'), 'has no "decoder" section')
  }
  for (const name of onnxFiles(dtype)) await checkOnnxStructure(path.join(dir, name))

  const generation = parsed.get('generation_config.json') ?? {}
  const eosTokenIds = tokenIds(generation.eos_token_id ?? config.eos_token_id ?? (decoder as Record<string, unknown>).eos_token_id)

  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)) // code-unit order: locale-independent hash
  const hash = createHash('sha256')
  for (const f of files) hash.update(`${f.path}\0${(await sha256OfFile(path.join(dir, f.path))).sha256}\n`)
  const checked: CheckedModel = {dir, dtype, files, contentHash: hash.digest('hex'), eosTokenIds}
  memo.set(key, checked)
  return checked
}
