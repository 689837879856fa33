/**
 * writeExport: one ordered stream of samples → one complete training-set folder.
 *
 * Atomic: everything is written into a sibling `<outDir>.partial-<host>-<pid>-<random>`
 * folder, the manifest last, and only then renamed to `outDir`. A failed or aborted export
 * removes its staging folder; a killed one leaves only a `.partial-` folder without a
 * manifest, which never looks complete, and the next export to the same `outDir` on this
 * host removes it once its process is gone. An existing non-empty `outDir` is kept unless
 * `overwrite: true`, and then only if it is an earlier mlcap export (it has a manifest):
 * it is replaced after the new export is complete. Two exports to one folder at once never
 * leave it half-replaced: see publish.
 */
import {randomBytes} from 'node:crypto'
import {hostname} from 'node:os'
import {setImmediate as yieldToEventLoop} from 'node:timers/promises'
import {mkdir, readdir, rename, rm, stat} from 'node:fs/promises'
import type {Stats} from 'node:fs'
import {basename, dirname, join, resolve} from 'node:path'
import {MlcapError, UsageError} from '../lake/errors.js'
import {sha256Hex} from '../lake/hashing.js'
import {processAlive} from '../lake/runs.js'
import {createCocoWriter} from './coco.js'
import {createHfWriter} from './hf.js'
import {createImageFolderWriter} from './imagefolder.js'
import {canonicalJson, emptyCounts, listExportFiles, MANIFEST_FILE, mlcapVersion, readManifest, writeManifest, type ExportCounts} from './manifest.js'
import {createCsvWriter, createJsonlWriter} from './rowsFormat.js'
import {HashThread} from './hashThread.js'
import {CAPTION_MODES, exportParameterError, selectedCaptions, validateSample, type CaptionMode, type ExportSample} from './sample.js'
import {createWebDatasetWriter} from './webdataset.js'
import {FileHashes, type FormatDefinition, type FormatWriter} from './writer.js'

/** Every export format and its writer. */
export const EXPORT_FORMATS = Object.freeze({
  hf: {description: 'Parquet shards for Hugging Face datasets (<split>/<split>-NNNNN-of-NNNNN.parquet)', sharded: true, create: createHfWriter},
  imagefolder: {description: 'datasets ImageFolder: <split>/<key>.<ext> + <split>/metadata.jsonl', sharded: false, create: createImageFolderWriter},
  webdataset: {description: 'WebDataset tar shards: <split>/NNNNN.tar with <key>.<ext>, .json, .txt', sharded: true, create: createWebDatasetWriter},
  coco: {description: 'COCO captions: <split>/images/ + <split>/captions.json', sharded: false, create: createCocoWriter},
  jsonl: {description: 'one JSON line per image and caption: captions.jsonl + images/', sharded: false, create: createJsonlWriter},
  csv: {description: 'one CSV row per image and caption (RFC 4180): captions.csv + images/', sharded: false, create: createCsvWriter},
} satisfies Record<string, FormatDefinition>)

export type ExportFormat = keyof typeof EXPORT_FORMATS

/** Samples between turns of the event loop (a Ctrl-C waits at most this many). */
const YIELD_EVERY = 8

export const DEFAULT_SHARD_SIZE = 10_000
export const DEFAULT_MAX_SHARD_BYTES = 256 * 1024 * 1024

export interface ExportOptions {
  format: ExportFormat
  outDir: string
  captions: CaptionMode
  /** Most samples per shard (hf, webdataset); default 10000. */
  shardSize?: number
  /** Most bytes per shard, approximately (hf, webdataset); default 256 MiB. */
  maxShardBytes?: number
  /** Recorded as the manifest's `created_from` (e.g. lake_commit and the command's arguments). Must be JSON. */
  manifestInfo: Record<string, unknown>
  /** Replace an existing earlier export at outDir once the new one is complete. */
  overwrite?: boolean
  /**
   * Check that each image's bytes hash to its sample's sha256 (EXPORT_HASH_MISMATCH), on the
   * hash thread as they are written. Off by default: it hashes every image a second time
   * (besides the file hashes of the manifest), ~25% more CPU.
   */
  verifyImages?: boolean
  /** Called after each sample with the number written so far. */
  onProgress?: (samples: number) => void
  /** Checked between samples; aborting removes everything written. */
  signal?: AbortSignal
}

export interface ExportSummary {
  format: ExportFormat
  outDir: string
  manifestPath: string
  counts: ExportCounts
  /** Files in the export, the manifest included. */
  files: number
  /** Bytes of those files, the manifest excluded. */
  bytes: number
  /** True when an earlier export at outDir was replaced. */
  replaced: boolean
}

function checkOptions(options: ExportOptions): {shardSize: number; maxShardBytes: number; createdFrom: Record<string, unknown>} {
  if (!Object.hasOwn(EXPORT_FORMATS, options.format)) {
    throw exportParameterError('format', `one of ${Object.keys(EXPORT_FORMATS).join(', ')}`, options.format)
  }
  if (typeof options.outDir !== 'string' || options.outDir.trim() === '') throw exportParameterError('outDir', 'a folder path', options.outDir)
  if (!(CAPTION_MODES as readonly string[]).includes(options.captions)) {
    throw exportParameterError('captions', `one of ${CAPTION_MODES.join(', ')}`, options.captions)
  }
  const positive = (name: string, value: number | undefined, fallback: number) => {
    if (value === undefined) return fallback
    if (!Number.isSafeInteger(value) || value <= 0) throw exportParameterError(name, 'a positive integer', value)
    return value
  }
  const shardSize = positive('shardSize', options.shardSize, DEFAULT_SHARD_SIZE)
  const maxShardBytes = positive('maxShardBytes', options.maxShardBytes, DEFAULT_MAX_SHARD_BYTES)
  if (options.manifestInfo === null || typeof options.manifestInfo !== 'object' || Array.isArray(options.manifestInfo)) {
    throw exportParameterError('manifestInfo', 'an object (e.g. {lake_commit, ...arguments})', options.manifestInfo)
  }
  let createdFrom: Record<string, unknown>
  try {
    createdFrom = JSON.parse(canonicalJson(options.manifestInfo, 0)) as Record<string, unknown>
  } catch (error) {
    throw exportParameterError('manifestInfo', 'JSON values only (strings, finite numbers, booleans, null, arrays, objects)', String(error), 'convert other values to strings first')
  }
  return {shardSize, maxShardBytes, createdFrom}
}

async function folderState(path: string): Promise<'absent' | 'empty' | 'export' | 'other'> {
  const info = await statOrNull(path)
  if (info === null) return 'absent'
  if (!info.isDirectory()) return 'other'
  let state: 'empty' | 'export' | 'other'
  try {
    if ((await readdir(path)).length === 0) return 'empty'
    // a damaged manifest: not something we may delete
    state = (await readManifest(path).catch(() => null)) === null ? 'other' : 'export'
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
    state = 'other' // gone while we looked: see below
  }
  if (state === 'other') {
    // An export that another export moves aside while we look at it reads as a folder without
    // a manifest: tell that apart from a folder that really is someone else's.
    const now = await statOrNull(path)
    if (now === null || now.ino !== info.ino || now.dev !== info.dev) throw exportConflict(path)
  }
  return state
}

async function statOrNull(path: string): Promise<Stats | null> {
  try {
    return await stat(path)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw error
  }
}

/** Another export to the same folder moved it or put its own there while this one was publishing. */
function exportConflict(outDir: string): MlcapError {
  return new MlcapError('EXPORT_CONFLICT', `export: another export replaced ${outDir} at the same time as this one; this one was not published, and the folder is left to the other`, {
    hint: `check what is there with: mlcap export verify ${outDir} (its manifest.json records the arguments it was made with); run this export again if you need its result. Run one export to a folder at a time.`,
  })
}

function refuseOutDir(outDir: string, state: 'export' | 'other'): MlcapError {
  return state === 'export'
    ? new UsageError('EXPORT_EXISTS', `export: ${outDir} already holds an export; expected an empty or new folder`, 'pass overwrite (--overwrite) to replace it, or choose another folder')
    : new UsageError('EXPORT_OUTDIR_NOT_EMPTY', `export: ${outDir} exists and is not an empty folder or an earlier mlcap export (no ${MANIFEST_FILE}); expected an empty or new folder`, 'choose another folder: mlcap only replaces its own exports')
}

function abortError(signal: AbortSignal, written: number, outDir: string): MlcapError {
  return new MlcapError('EXPORT_ABORTED', `export: aborted after ${written} samples; nothing was written to ${outDir}`, {
    hint: 'run the export again to produce it', cause: signal.reason,
  })
}

/** This host, as it appears in staging folder names (a hash: host names may hold dashes). */
const HOST_TAG = sha256Hex(hostname()).slice(0, 8)

/** A sibling of `outDir` owned by this process: `<outDir>.<kind>-<host>-<pid>-<random>`. */
function siblingPath(outDir: string, kind: 'partial' | 'old'): string {
  return `${outDir}.${kind}-${HOST_TAG}-${process.pid}-${randomBytes(6).toString('hex')}`
}

/**
 * Tidies what earlier exports to `outDir` on this host left when they were killed (their
 * process is gone; folders of live exports and of other hosts are kept). A staging folder
 * (`.partial-`) is removed. A replaced export (`.old-`) is put back when the kill came
 * between the two renames of an --overwrite, so the folder is never left without its export;
 * otherwise it is removed.
 */
async function removeAbandonedStaging(outDir: string): Promise<void> {
  let names: string[]
  try {
    names = await readdir(dirname(outDir))
  } catch {
    return // no parent folder yet: nothing was left there
  }
  const abandoned = (kind: 'partial' | 'old') =>
    names.filter((name) => {
      const prefix = `${basename(outDir)}.${kind}-`
      const owner = name.startsWith(prefix) ? /^([0-9a-f]{8})-(\d+)-[0-9a-f]{12}$/.exec(name.slice(prefix.length)) : null
      return owner !== null && owner[1] === HOST_TAG && !processAlive(Number(owner[2]))
    })
  for (const name of abandoned('old')) {
    if ((await folderState(outDir)) === 'absent') await rename(join(dirname(outDir), name), outDir)
    else await rm(join(dirname(outDir), name), {recursive: true, force: true})
  }
  for (const name of abandoned('partial')) await rm(join(dirname(outDir), name), {recursive: true, force: true})
}

/**
 * Moves the finished staging folder into place; replaces an earlier export only when allowed.
 * Two exports to one folder at once: the last to publish wins, and one that finds the folder
 * taken (or moved aside) under it fails with EXPORT_CONFLICT, leaving the other's export in
 * place and nothing of its own beside it (writeExport removes its staging folder).
 */
async function publish(staging: string, outDir: string, overwrite: boolean): Promise<boolean> {
  const state = await folderState(outDir)
  if (state === 'absent' || state === 'empty') {
    // rename(2) replaces an empty folder; it fails if another export put its own there meanwhile
    await rename(staging, outDir).catch(conflictWhen(outDir, 'ENOTEMPTY', 'EEXIST'))
    return false
  }
  if (state === 'other' || !overwrite) throw refuseOutDir(outDir, state)
  const old = siblingPath(outDir, 'old')
  await rename(outDir, old).catch(conflictWhen(outDir, 'ENOENT')) // another export moved it aside first
  try {
    await rename(staging, outDir)
  } catch (error) {
    if (isCode(error, 'ENOTEMPTY', 'EEXIST')) {
      // Another export moved its own in between our two renames: it replaced the one we moved aside.
      await rm(old, {recursive: true, force: true})
      throw exportConflict(outDir)
    }
    await rename(old, outDir)
    throw error
  }
  await rm(old, {recursive: true, force: true})
  return true
}

function isCode(error: unknown, ...codes: string[]): boolean {
  return codes.includes((error as NodeJS.ErrnoException).code ?? '')
}

/** A rejection handler: EXPORT_CONFLICT for errors with one of `codes`, any other error as it is. */
function conflictWhen(outDir: string, ...codes: string[]): (error: unknown) => never {
  return (error) => {
    throw isCode(error, ...codes) ? exportConflict(outDir) : error
  }
}

export async function writeExport(samples: AsyncIterable<ExportSample> | Iterable<ExportSample>, options: ExportOptions): Promise<ExportSummary> {
  const {shardSize, maxShardBytes, createdFrom} = checkOptions(options)
  const outDir = resolve(options.outDir)
  const overwrite = options.overwrite === true
  const signal = options.signal
  await removeAbandonedStaging(outDir) // first: it may put back an export a killed --overwrite had moved aside
  const initial = await folderState(outDir)
  if (initial === 'other' || (initial === 'export' && !overwrite)) throw refuseOutDir(outDir, initial)
  if (signal?.aborted) throw abortError(signal, 0, outDir)

  await mkdir(dirname(outDir), {recursive: true})
  const staging = siblingPath(outDir, 'partial')
  await mkdir(staging)
  const definition: FormatDefinition = EXPORT_FORMATS[options.format]
  const version = mlcapVersion()
  // Files are hashed for the manifest on another core. With verifyImages, writers pass each
  // image with imageCheck(sample): its bytes are verified against the sample's sha256 as written.
  const hashes = new FileHashes(HashThread.start())
  let writer: FormatWriter | undefined
  let written = 0
  try {
    writer = definition.create({dir: staging, captions: options.captions, shardSize, maxShardBytes, mlcapVersion: version, hashes, verifyImages: options.verifyImages === true})
    const counts = emptyCounts()
    const keys = new Set<string>()
    for await (const sample of samples) {
      if (signal?.aborted) throw abortError(signal, written, outDir)
      validateSample(sample, written)
      if (keys.has(sample.key)) {
        throw exportParameterError(`sample #${written} key`, 'a key not used by an earlier sample', sample.key, 'sample keys must be unique within an export')
      }
      keys.add(sample.key)
      await writer.add(sample)
      const captions = selectedCaptions(sample, options.captions).length
      counts.samples++
      counts.captions += captions
      counts.splits[sample.split].samples++
      counts.splits[sample.split].captions += captions
      written++
      options.onProgress?.(written)
      // Writes are synchronous (see FileSink): let signals, timers and the progress bar run now and then.
      if (written % YIELD_EVERY === 0) await yieldToEventLoop()
    }
    if (written === 0) {
      throw new MlcapError('EXPORT_EMPTY', `export: the sample stream for ${basename(outDir)} was empty; expected at least one sample`, {
        hint: 'check that gold.pairs has rows for the selection (mlcap etl run gold)',
      })
    }
    await writer.finish()
    if (signal?.aborted) throw abortError(signal, written, outDir)
    const files = await listExportFiles(staging, hashes)
    await writeManifest(staging, {
      mlcap_version: version,
      format: options.format,
      options: {captions: options.captions, ...(definition.sharded ? {shard_size: shardSize, max_shard_bytes: maxShardBytes} : {})},
      created_from: createdFrom,
      counts,
      files,
    })
    if (signal?.aborted) throw abortError(signal, written, outDir)
    const replaced = await publish(staging, outDir, overwrite)
    return {
      format: options.format,
      outDir,
      manifestPath: join(outDir, MANIFEST_FILE),
      counts,
      files: files.length + 1,
      bytes: files.reduce((total, file) => total + file.bytes, 0),
      replaced,
    }
  } catch (error) {
    // the first error is the one to report; a failure while cleaning up must not replace it
    await Promise.allSettled([writer?.close()])
    await rm(staging, {recursive: true, force: true})
    throw error
  } finally {
    await writer?.close()
    await hashes.thread?.close()
  }
}
