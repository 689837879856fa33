/**
 * Benchmark: `exportGold` to webdataset and hf against `tar -cf` of the same image files
 * (the floor: reading the files and writing them once into an archive).
 *
 *   npx tsx bench/export.ts [pairs]        (default 2000; env BENCH_EXPORT_PAIRS too)
 *
 * Builds a lake by ingesting generated JPEGs (640×480, smooth gradients with some texture,
 * ~q85) with a sidecar caption each, then silver and gold through the core functions. The
 * lake is cached in bench/.work/export-lake-<pairs> (marked complete when built; delete the
 * folder to rebuild it). Each contender runs RUNS times, alternating, on a warm page
 * cache; the median wall time is reported with MB/s of image bytes and the ratio to tar.
 * Target: export ≤ 1.5 × tar. Where the page cache can be dropped (root), the same runs
 * are repeated cold, and the CLI's peak RSS is compared for a quarter and all of the images.
 */
import {spawnSync} from 'node:child_process'
import {accessSync, constants, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {pathToFileURL} from 'node:url'
import sharp from 'sharp'

import {exportGold} from '../src/lake/exportGold.js'
import {runGold} from '../src/lake/gold.js'
import {ingest} from '../src/lake/ingest.js'
import {LakeLayout} from '../src/lake/layout.js'
import {LakeReader} from '../src/lake/reader.js'
import {runSilver} from '../src/lake/silver.js'
import {dropCaches, median, timeMlcap, WORK} from './lib.js'

const RUNS = 5
const TARGET_RATIO = 1.5

export interface ExportBenchResult {
  pairs: number
  images: number
  imageBytes: number
  seconds: {tar: number; webdataset: number; hf: number}
  /** CPU seconds (user + system), less sensitive than wall time to other load on the machine. */
  cpuSeconds: {tar: number; webdataset: number; hf: number}
  mbPerSecond: {tar: number; webdataset: number; hf: number}
  ratio: {webdataset: number; hf: number}
}

/** A photo-like JPEG: gradients and a seeded texture, so sizes resemble real images. */
async function photo(seed: number, width = 640, height = 480): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3)
  let x = (seed * 2654435761) >>> 0
  const [a, b, c] = [seed % 7, (seed * 3) % 11, (seed * 5) % 13]
  for (let y = 0; y < height; y++) {
    for (let i = 0; i < width; i++) {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0
      const grain = (x >>> 27) - 16
      const o = (y * width + i) * 3
      raw[o] = (i * (a + 1) + y + grain) & 0xff
      raw[o + 1] = (y * (b + 1) / 2 + Math.sin((i + seed) / 17) * 40 + 128 + grain) & 0xff
      raw[o + 2] = ((i + y) * (c + 1) / 4 + grain) & 0xff
    }
  }
  return sharp(raw, {raw: {width, height, channels: 3}}).jpeg({quality: 85}).toBuffer()
}

export async function buildLake(dir: string, pairs: number): Promise<LakeLayout> {
  const photos = path.join(dir, 'photos')
  mkdirSync(photos, {recursive: true})
  for (let start = 0; start < pairs; start += 16) {
    await Promise.all(
      Array.from({length: Math.min(16, pairs - start)}, async (_, k) => {
        const i = start + k
        const name = `photo-${String(i).padStart(5, '0')}`
        writeFileSync(path.join(photos, `${name}.jpg`), await photo(i))
        writeFileSync(path.join(photos, `${name}.txt`), `a generated photo number ${i}, with gradients and grain`)
      }),
    )
  }
  const layout = new LakeLayout(path.join(dir, 'lake'))
  await ingest(layout, [photos])
  await runSilver(layout)
  await runGold(layout, {nearDuplicateDistance: 0})
  return layout
}

/** The lake of `pairs` generated photos, built once and reused from bench/.work (the catalog holds absolute paths: built in place, marked complete last). */
async function cachedLake(pairs: number): Promise<{layout: LakeLayout; built: boolean}> {
  const dir = path.join(WORK, `export-lake-${pairs}`)
  const layout = new LakeLayout(path.join(dir, 'lake'))
  if (existsSync(path.join(dir, '.complete'))) return {layout, built: false}
  rmSync(dir, {recursive: true, force: true})
  await buildLake(dir, pairs)
  rmSync(path.join(dir, 'photos'), {recursive: true, force: true})
  writeFileSync(path.join(dir, '.complete'), String(pairs))
  return {layout, built: true}
}

async function goldImageFiles(layout: LakeLayout): Promise<string[]> {
  const reader = await LakeReader.open(layout)
  try {
    const rows = (await reader.connection.runAndReadAll(`SELECT DISTINCT image_sha256 FROM gold.pairs ORDER BY image_sha256`)).getRows()
    return rows.map(([sha]) => layout.objectPath(String(sha)))
  } finally {
    reader.close()
  }
}

/** Wall and CPU seconds of `work`: CPU of this process, or what `work` returns (a child's). */
async function measure(work: () => Promise<number | void> | number | void): Promise<{wall: number; cpu: number}> {
  const started = process.hrtime.bigint()
  const cpu = process.cpuUsage()
  const childCpu = await work()
  const used = process.cpuUsage(cpu)
  return {wall: Number(process.hrtime.bigint() - started) / 1e9, cpu: typeof childCpu === 'number' ? childCpu : (used.user + used.system) / 1e6}
}

/** Whether this process may drop the page cache (root, with /proc/sys writable). */
function canDropCaches(): boolean {
  try {
    accessSync('/proc/sys/vm/drop_caches', constants.W_OK)
    return true
  } catch {
    return false
  }
}


export async function main(pairs = Number(process.argv[2] ?? process.env.BENCH_EXPORT_PAIRS ?? 2000)): Promise<ExportBenchResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mlcap-bench-export-'))
  try {
    const started = Date.now()
    const {layout, built} = await cachedLake(pairs)
    const files = await goldImageFiles(layout)
    const imageBytes = files.reduce((total, file) => total + statSync(file).size, 0)
    console.log(`lake: ${files.length} gold images, ${(imageBytes / 1e6).toFixed(1)} MB of normalized JPEGs (${built ? 'built' : 'cached, opened'} in ${((Date.now() - started) / 1000).toFixed(1)} s)`)
    const list = path.join(dir, 'files.txt')
    writeFileSync(list, files.join('\n') + '\n')

    const out = path.join(dir, 'out')
    // Each contender starts with no output folder; removing the previous one is not timed.
    const clearOut = () => rmSync(out, {recursive: true, force: true})
    const tarRun = () => {
      mkdirSync(out)
      // bash's `time` reports tar's CPU on stderr; TIMEFORMAT keeps it to "user system"
      const run = spawnSync('bash', ['-c', 'TIMEFORMAT="%U %S"; time tar -cf "$1" -P -T "$2"', 'bench', path.join(out, 'images.tar'), list], {encoding: 'utf8'})
      if (run.status !== 0) throw new Error(`bench: tar failed: ${run.stderr}`)
      const [user, system] = run.stderr.trim().split(/\s+/).slice(-2).map(Number)
      return user + system
    }
    const exportRun = (format: 'webdataset' | 'hf') => async () => {
      await exportGold(layout, {format, outDir: out})
    }
    clearOut()
    await measure(tarRun) // warm the page cache
    const times = {tar: [] as Array<{wall: number; cpu: number}>, webdataset: [] as Array<{wall: number; cpu: number}>, hf: [] as Array<{wall: number; cpu: number}>}
    for (let run = 0; run < RUNS; run++) {
      for (const name of ['tar', 'webdataset', 'hf'] as const) {
        clearOut()
        times[name].push(await measure(name === 'tar' ? tarRun : exportRun(name)))
      }
    }
    const pick = (field: 'wall' | 'cpu') => ({
      tar: median(times.tar.map((t) => t[field])),
      webdataset: median(times.webdataset.map((t) => t[field])),
      hf: median(times.hf.map((t) => t[field])),
    })
    const s = pick('wall')
    const cpu = pick('cpu')
    const mb = (t: number) => imageBytes / 1e6 / t
    const result: ExportBenchResult = {
      pairs,
      images: files.length,
      imageBytes,
      seconds: s,
      cpuSeconds: cpu,
      mbPerSecond: {tar: mb(s.tar), webdataset: mb(s.webdataset), hf: mb(s.hf)},
      ratio: {webdataset: s.webdataset / s.tar, hf: s.hf / s.tar},
    }
    console.log(`median of ${RUNS} runs, ${files.length} images (load average ${os.loadavg()[0].toFixed(1)} on ${os.availableParallelism()} cores):`)
    for (const name of ['tar', 'webdataset', 'hf'] as const) {
      const ratio = name === 'tar' ? '1.00× (floor)' : `${result.ratio[name].toFixed(2)}× tar ${result.ratio[name] <= TARGET_RATIO ? '(within' : '(OVER'} the ${TARGET_RATIO}× target)`
      console.log(`  ${name.padEnd(10)} ${s[name].toFixed(3).padStart(7)} s  ${result.mbPerSecond[name].toFixed(0).padStart(5)} MB/s  cpu ${cpu[name].toFixed(2).padStart(5)} s  ${ratio}`)
    }
    // Cold page cache (root only): each run starts with the images, the lake and the output uncached, as a
    // first export of a lake larger than memory would. The warm figures above are the target's.
    if (canDropCaches()) {
      const cold = {tar: [] as number[], webdataset: [] as number[], hf: [] as number[]}
      for (let run = 0; run < RUNS; run++) {
        for (const name of ['tar', 'webdataset', 'hf'] as const) {
          clearOut()
          dropCaches()
          cold[name].push((await measure(name === 'tar' ? tarRun : exportRun(name))).wall)
        }
      }
      const c = {tar: median(cold.tar), webdataset: median(cold.webdataset), hf: median(cold.hf)}
      console.log(`cold page cache, median of ${RUNS} runs:`)
      for (const name of ['tar', 'webdataset', 'hf'] as const) {
        console.log(`  ${name.padEnd(10)} ${c[name].toFixed(3).padStart(7)} s  ${(imageBytes / 1e6 / c[name]).toFixed(0).padStart(5)} MB/s  ${name === 'tar' ? '1.00× (floor)' : `${(c[name] / c.tar).toFixed(2)}× tar`}`)
      }
    }
    // Streaming: the CLI's peak RSS exporting a quarter of the images and all of them.
    const quarter = Math.max(1, Math.floor(files.length / 4))
    console.log(`peak RSS of \`mlcap export\` (one process each), ${quarter} vs ${files.length} images:`)
    for (const format of ['webdataset', 'hf'] as const) {
      const rss = (limit: number) => {
        rmSync(out, {recursive: true, force: true})
        return timeMlcap(['export', '--format', format, '--out', out, '--lake', layout.root, '--limit', String(limit), '--json']).maxRssMb
      }
      const [small, large] = [rss(quarter), rss(files.length)]
      console.log(`  ${format.padEnd(10)} ${small.toFixed(0)} MB → ${large.toFixed(0)} MB  (${(large / small).toFixed(2)}× for ${(files.length / quarter).toFixed(0)}× the images)`)
    }
    return result
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  await main()
}
