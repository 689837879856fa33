/**
 * Shared fixtures for the lake-core and CLI tests: temporary folders, small images made
 * with sharp (distinct content from a seed), the CLI run as a child process, and quick
 * reads of a lake through the real LakeReader. Nothing here mocks anything.
 */
import assert from 'node:assert/strict'
import {spawn, type ChildProcess} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, type Dirent} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {DuckDBInstance} from '@duckdb/node-api'
import sharp from 'sharp'

import {LakeLayout} from '../../src/lake/layout.js'
import {LakeReader} from '../../src/lake/reader.js'

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
export const CLI = path.join(REPO_ROOT, 'bin', 'run.js')

/** A fresh temporary folder, and a function that removes it. */
export function tempDir(prefix = 'mlcap-'): {dir: string; cleanup: () => void} {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix))
  return {dir, cleanup: () => rmSync(dir, {recursive: true, force: true})}
}

/** Deterministic noise (an LCG), so every seed gives different image bytes. */
export function noise(width: number, height: number, seed: number): Buffer {
  const raw = Buffer.alloc(width * height * 3)
  let x = (seed * 2654435761) >>> 0
  for (let i = 0; i < raw.length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0
    raw[i] = x >>> 24
  }
  return raw
}

export type ImageFormat = 'png' | 'jpeg' | 'webp'

/** A small image whose bytes depend only on (seed, size, format). */
export async function imageBytes(seed: number, options: {width?: number; height?: number; format?: ImageFormat} = {}): Promise<Buffer> {
  const width = options.width ?? 16
  const height = options.height ?? 16
  const image = sharp(noise(width, height, seed), {raw: {width, height, channels: 3}})
  switch (options.format ?? 'png') {
    case 'jpeg':
      return image.jpeg({quality: 80}).toBuffer()
    case 'webp':
      return image.webp({lossless: true}).toBuffer()
    default:
      return image.png().toBuffer()
  }
}

export async function writeImage(file: string, seed: number, options: {width?: number; height?: number; format?: ImageFormat} = {}): Promise<Buffer> {
  const bytes = await imageBytes(seed, options)
  mkdirSync(path.dirname(file), {recursive: true})
  writeFileSync(file, bytes)
  return bytes
}

/**
 * `count` distinct PNGs named img-0000.png … in `dir`; every `captionEvery`-th one gets a
 * sidecar caption. Returns the number of captions written.
 */
export async function writeImageFolder(dir: string, count: number, options: {firstSeed?: number; captionEvery?: number} = {}): Promise<{images: number; captions: number}> {
  mkdirSync(dir, {recursive: true})
  const first = options.firstSeed ?? 0
  let captions = 0
  const jobs: Promise<unknown>[] = []
  for (let i = 0; i < count; i++) {
    const name = `img-${String(first + i).padStart(4, '0')}`
    jobs.push(writeImage(path.join(dir, `${name}.png`), first + i))
    if (options.captionEvery && i % options.captionEvery === 0) {
      writeFileSync(path.join(dir, `${name}.txt`), `caption of image ${first + i}`)
      captions++
    }
    if (jobs.length >= 32) await Promise.all(jobs.splice(0))
  }
  await Promise.all(jobs)
  return {images: count, captions}
}

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  ms: number
}

export interface CliOptions {
  env?: Record<string, string | undefined>
  /** Kill the process with SIGKILL after this many ms (the result has signal SIGKILL). */
  killAfterMs?: number
  /** Working directory; a neutral temp dir by default so nothing depends on the test's cwd. */
  cwd?: string
  timeoutMs?: number
}

/** The environment the CLI runs in under test: no inherited lake, lock timeout, debug or NODE_OPTIONS; `extra` on top. */
export function cliEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {...process.env, NO_COLOR: '1', FORCE_COLOR: '0'}
  delete env.MLCAP_LAKE
  delete env.MLCAP_LOCK_TIMEOUT_MS
  delete env.DEBUG
  delete env.NODE_OPTIONS // the test runner's --import tsx is not the CLI's business
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k]
    else env[k] = v
  }
  return env
}

/** Starts `node bin/run.js ...args` and returns the child (for tests that signal it themselves). */
export function startCli(args: string[], options: CliOptions = {}): ChildProcess {
  return spawn(process.execPath, [CLI, ...args], {
    cwd: options.cwd ?? os.tmpdir(),
    env: cliEnv(options.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
}

/** Runs the CLI to completion (or to its kill) and collects its output. */
export function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  const started = Date.now()
  const child = startCli(args, options)
  return collect(child, started, options)
}

export function collect(child: ChildProcess, started: number, options: {killAfterMs?: number; timeoutMs?: number} = {}): Promise<CliResult> {
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const timers: NodeJS.Timeout[] = []
  if (options.killAfterMs !== undefined) timers.push(setTimeout(() => child.kill('SIGKILL'), options.killAfterMs))
  timers.push(
    setTimeout(() => {
      stderr += `\n[test: killed after ${options.timeoutMs ?? 120_000} ms timeout]`
      child.kill('SIGKILL')
    }, options.timeoutMs ?? 120_000),
  )
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => {
      for (const t of timers) clearTimeout(t)
      resolve({code, signal, stdout, stderr, ms: Date.now() - started})
    })
  })
}

/** Parses the --json output of a command, with the raw output in the message if it is not JSON. */
export function parseJson<T = any>(result: CliResult): T {
  try {
    return JSON.parse(result.stdout) as T
  } catch {
    throw new Error(`expected JSON on stdout (exit ${result.code}); stdout=${result.stdout}\nstderr=${result.stderr}`)
  }
}

/** Runs SQL against the latest commit of a lake through the real reader; rows as JSON objects. */
export async function lakeRows(lake: string, sql: string): Promise<Record<string, any>[]> {
  const reader = await LakeReader.open(new LakeLayout(lake))
  try {
    return (await reader.connection.runAndReadAll(sql)).getRowObjectsJson() as Record<string, any>[]
  } finally {
    reader.close()
  }
}

/** Rows a plain-folder reader (DuckDB's read_parquet over `<folder>/*.parquet`, as Spark or pandas would) sees, outside mlcap. */
export async function plainFolderCount(folder: string): Promise<number> {
  const instance = await DuckDBInstance.create(':memory:')
  const c = await instance.connect()
  try {
    return Number((await c.runAndReadAll(`SELECT count(*) FROM read_parquet('${folder}/*.parquet')`)).getRows()[0][0])
  } finally {
    c.closeSync()
    instance.closeSync()
  }
}

/** One number from a one-row, one-column query. */
export async function lakeCount(lake: string, sql: string): Promise<number> {
  const rows = await lakeRows(lake, sql)
  return Number(Object.values(rows[0])[0])
}

/** The table each stage's first commit adds a data file to (what waitForRun watches). */
const STAGE_TABLE: Record<string, string> = {ingest: 'bronze.images', silver: 'silver.images', gold: 'gold.pairs'}

/**
 * Polls until a running `stage` run (in `child`) has made `commits` commits, seen as data
 * files in the stage's table folder (that folder must start empty); with 0, until the lake
 * (perhaps not created yet) records the run as running. Fails if `child` exits first or
 * after 60 s. Commits are counted in the folder, not the catalog: a run committing every
 * few milliseconds holds the catalog lock nearly all the time, and a reader polling the
 * catalog could wait until the run was over.
 */
export async function waitForRun(lake: string, stage: string, commits: number, child: {exitCode: number | null}): Promise<void> {
  const deadline = Date.now() + 60_000
  const tableDir = new LakeLayout(lake).tableDir(STAGE_TABLE[stage]!)
  const dataFiles = () => (existsSync(tableDir) ? readdirSync(tableDir).filter((name) => name.endsWith('.parquet')).length : 0)
  const recordedRunning = async () =>
    existsSync(path.join(lake, 'catalog.duckdb')) &&
    (await lakeCount(lake, `SELECT count(*) FROM lake.runs WHERE stage = '${stage}' AND status = 'running'`)) > 0
  while (Date.now() < deadline && child.exitCode === null) {
    if (commits > 0 ? dataFiles() >= commits : await recordedRunning()) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  assert.fail(`no running ${stage} run with ${commits} commit(s) appeared`)
}

export const BRONZE_TABLES = ['bronze.images', 'bronze.sources', 'bronze.captions', 'bronze.rejects'] as const
export const TABLE_KEYS: Record<(typeof BRONZE_TABLES)[number], string> = {
  'bronze.images': 'sha256',
  'bronze.sources': "sha256 || '|' || path",
  'bronze.captions': 'caption_id',
  'bronze.rejects': 'reject_id',
}

/**
 * The invariants of a lake at a commit: for every bronze table, the rows visible equal the
 * rows its commits say they added, no key appears twice, and every image, source and
 * caption agrees with the others. Returns the counts per table.
 */
export async function assertLakeConsistent(lake: string, assert: typeof import('node:assert/strict')): Promise<Record<string, number>> {
  const reader = await LakeReader.open(new LakeLayout(lake))
  try {
    const one = async (sql: string) => Number(Object.values((await reader.connection.runAndReadAll(sql)).getRowObjectsJson()[0])[0])
    const counts: Record<string, number> = {}
    for (const table of BRONZE_TABLES) {
      const rows = await one(`SELECT count(*) FROM ${table}`)
      const distinct = await one(`SELECT count(DISTINCT ${TABLE_KEYS[table]}) FROM ${table}`)
      const added = await one(
        `SELECT coalesce(sum(CAST(json_extract(summary, '$.added."${table}"') AS BIGINT)), 0) FROM lake.commits`,
      )
      assert.equal(rows, added, `${table}: ${rows} rows visible but the commits added ${added}`)
      assert.equal(distinct, rows, `${table}: ${rows} rows but only ${distinct} distinct keys`)
      counts[table] = rows
    }
    assert.equal(await one(`SELECT count(*) FROM bronze.sources WHERE sha256 NOT IN (SELECT sha256 FROM bronze.images)`), 0, 'a source without its image')
    assert.equal(await one(`SELECT count(*) FROM bronze.captions WHERE sha256 NOT IN (SELECT sha256 FROM bronze.images)`), 0, 'a caption without its image')
    assert.equal(await one(`SELECT count(*) FROM bronze.images WHERE sha256 NOT IN (SELECT sha256 FROM bronze.sources)`), 0, 'an image without a source')
    return counts
  } finally {
    reader.close()
  }
}

/** Every file under `dir`, relative, sorted (for "nothing changed" checks). */
export function listFiles(dir: string): string[] {
  const out: string[] = []
  const walk = (d: string, rel: string) => {
    let entries: Dirent[]
    try {
      entries = readdirSync(d, {withFileTypes: true})
    } catch {
      return
    }
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name
      if (e.isDirectory()) walk(path.join(d, e.name), r)
      else out.push(r)
    }
  }
  walk(dir, '')
  return out.sort()
}

/**
 * A smooth picture (a few random colour blobs: 6×5 noise enlarged with a cubic kernel) whose
 * perceptual hash depends on the seed; resized or re-encoded copies of it stay within a few
 * bits of pHash, different seeds land far apart (≥ 12 bits over seeds 0–39). For near-duplicate
 * tests, where plain noise would not survive a resize.
 */
export async function blobImage(
  seed: number,
  options: {width?: number; height?: number; format?: ImageFormat; quality?: number} = {},
): Promise<Buffer> {
  const image = sharp(noise(6, 5, seed), {raw: {width: 6, height: 5, channels: 3}}).resize(options.width ?? 200, options.height ?? 150, {
    kernel: 'cubic',
    fit: 'fill',
  })
  switch (options.format ?? 'png') {
    case 'jpeg':
      return image.jpeg({quality: options.quality ?? 85}).toBuffer()
    case 'webp':
      return image.webp({quality: options.quality ?? 85}).toBuffer()
    default:
      return image.png().toBuffer()
  }
}
