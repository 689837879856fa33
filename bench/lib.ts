/**
 * Shared pieces of the benchmarks: generated photo-like inputs (cached under bench/.work),
 * timing of whole commands with peak memory (GNU time), and printing of ratios.
 */
import {spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import sharp from 'sharp'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const WORK = path.join(ROOT, 'bench', '.work')
export const CLI = path.join(ROOT, 'bin', 'run.js')

export interface Timing {
  seconds: number
  maxRssMb: number
}

/** Runs a command to completion under GNU time; throws with its output if it fails. */
export function timeCommand(command: string, args: string[], options: {cwd?: string; env?: NodeJS.ProcessEnv} = {}): Timing {
  const result = spawnSync('/usr/bin/time', ['-f', '%e %M', command, ...args], {
    cwd: options.cwd,
    env: {...process.env, ...options.env},
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  })
  const lines = result.stderr.trim().split('\n')
  const [seconds, rssKb] = lines[lines.length - 1].split(' ').map(Number)
  if (result.status !== 0) throw new Error(`bench: ${command} ${args.join(' ')} exited ${result.status}\n${result.stdout}\n${result.stderr}`)
  return {seconds, maxRssMb: rssKb / 1024}
}

/** Runs the built mlcap CLI under GNU time. */
export function timeMlcap(args: string[], env: NodeJS.ProcessEnv = {}): Timing {
  return timeCommand(process.execPath, [CLI, ...args], {env})
}

export function requireTool(tool: string, install: string): void {
  const found = spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0
  if (!found) throw new Error(`bench: ${tool} is needed as the baseline; install it with: ${install}`)
}

/** A deterministic pseudo-random generator (benchmarks must compare the same inputs). */
export function rng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

/**
 * Photo-like JPEGs: smooth gradients, shapes and sensor-like noise, so they compress like
 * photos (≈ 0.2–0.6 bytes per pixel at q85) rather than like flat test cards.
 * Cached: a folder that already holds `count` files is reused.
 */
export async function makePhotos(
  dir: string,
  count: number,
  options: {minMp?: number; maxMp?: number; rotatedEvery?: number; seed?: number} = {},
): Promise<string> {
  if (existsSync(dir) && readdirSync(dir).filter((f) => f.endsWith('.jpg')).length === count) return dir
  rmSync(dir, {recursive: true, force: true})
  mkdirSync(dir, {recursive: true})
  const random = rng(options.seed ?? 42)
  const minMp = options.minMp ?? 1
  const maxMp = options.maxMp ?? 4
  const noiseTile = await sharp({create: {width: 256, height: 256, channels: 3, noise: {type: 'gaussian', mean: 128, sigma: 22}}})
    .raw()
    .toBuffer()
  const pending = new Set<Promise<void>>()
  for (let i = 0; i < count; i++) {
    const mp = minMp + random() * (maxMp - minMp)
    const aspect = [4 / 3, 3 / 2, 16 / 9, 1][Math.floor(random() * 4)]
    const width = Math.round(Math.sqrt(mp * 1e6 * aspect))
    const height = Math.round((mp * 1e6) / width)
    const colour = {r: Math.floor(random() * 255), g: Math.floor(random() * 255), b: Math.floor(random() * 255)}
    const rotated = options.rotatedEvery ? i % options.rotatedEvery === 0 : false
    const job = (async () => {
      // Noise tiles no larger than the image (small thumbnails get one cropped tile).
      const tileW = Math.min(256, width)
      const tileH = Math.min(256, height)
      const tile =
        tileW === 256 && tileH === 256
          ? noiseTile
          : await sharp(noiseTile, {raw: {width: 256, height: 256, channels: 3}}).extract({left: 0, top: 0, width: tileW, height: tileH}).raw().toBuffer()
      const tiles = Math.ceil(width / 256) * Math.ceil(height / 256)
      const composites = []
      for (let t = 0; t < Math.min(tiles, 64); t++) {
        composites.push({
          input: tile,
          raw: {width: tileW, height: tileH, channels: 3 as const},
          left: Math.floor(random() * Math.max(1, width - tileW)),
          top: Math.floor(random() * Math.max(1, height - tileH)),
          blend: 'overlay' as const,
        })
      }
      let image = sharp({create: {width, height, channels: 3, background: colour}}).composite(composites).blur(1.2)
      if (rotated) image = image.withMetadata({orientation: 6})
      await image.jpeg({quality: 85}).toFile(path.join(dir, `photo-${String(i).padStart(5, '0')}.jpg`))
    })()
    const tracked: Promise<void> = job.finally(() => pending.delete(tracked))
    pending.add(tracked)
    if (pending.size >= os.availableParallelism() * 2) await Promise.race(pending)
  }
  await Promise.all(pending)
  writeFileSync(path.join(dir, '.complete'), String(count))
  return dir
}

export function folderBytes(dir: string): number {
  let total = 0
  for (const entry of readdirSync(dir, {withFileTypes: true})) {
    const p = path.join(dir, entry.name)
    total += entry.isDirectory() ? folderBytes(p) : statSync(p).size
  }
  return total
}

export function freshDir(name: string): string {
  const dir = path.join(WORK, name)
  rmSync(dir, {recursive: true, force: true})
  mkdirSync(dir, {recursive: true})
  return dir
}

/** Drops the page cache where allowed (root), so cold and warm runs are comparable; harmless otherwise. */
export function dropCaches(): void {
  spawnSync('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches'], {stdio: 'ignore'})
}

/** The middle value (the upper one of the two middles for an even count). */
export const median = (values: readonly number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

export function report(title: string, rows: Array<[string, string]>): void {
  console.log(`\n${title}`)
  const width = Math.max(...rows.map(([k]) => k.length))
  for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${v}`)
}
