/**
 * Samples for the export tests, made here with sharp: ~30 small images in three formats
 * and three splits, with 1-3 captions each whose text exercises quoting (commas, quotes,
 * newlines, non-ASCII). Also small readers shared by the tests.
 */
import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {mkdtemp, readdir, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join, relative, sep} from 'node:path'
import sharp from 'sharp'
import type {ExportSample, ImageExt, Split} from '../../src/export/sample.js'

export const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex')

const TRICKY = [
  'a dog, running on the beach',
  'she said "hello" to the cat',
  'two lines\nof caption',
  'café crème – naïve 🍰',
  'tab\tand, "both", kinds',
  'plain caption',
]

const SPLIT_OF: Split[] = ['train', 'train', 'train', 'val', 'test']
const EXT_OF: ImageExt[] = ['jpg', 'jpg', 'png', 'webp']

let cached: ExportSample[] | undefined

export async function makeSamples(count = 30): Promise<ExportSample[]> {
  if (cached && cached.length === count) return cached
  const samples: ExportSample[] = []
  for (let i = 0; i < count; i++) {
    const width = 16 + (i % 7) * 8
    const height = 12 + (i % 5) * 8
    const imageExt = EXT_OF[i % EXT_OF.length]
    const raw = sharp({create: {width, height, channels: 3, background: {r: (i * 37) % 256, g: (i * 91) % 256, b: (i * 53) % 256}}})
    const image = await (imageExt === 'jpg' ? raw.jpeg({quality: 80}) : imageExt === 'png' ? raw.png() : raw.webp()).toBuffer()
    const hash = sha256(image)
    const captionCount = 1 + (i % 3)
    samples.push({
      key: `${hash.slice(0, 12)}${String(i).padStart(4, '0')}`,
      sha256: hash,
      image,
      imageExt,
      split: SPLIT_OF[i % SPLIT_OF.length],
      captions: Array.from({length: captionCount}, (_, c) => ({
        captionId: `cap-${i}-${c}`,
        text: `${TRICKY[(i + c) % TRICKY.length]} #${i}.${c}`,
        source: c === 0 ? 'human' : 'model:blip-base',
      })),
      width,
      height,
      ...(i % 4 === 0 ? {attributes: {photographer: `p${i}`, tags: ['a', 'b'], score: i / 10}} : {}),
    })
  }
  cached = samples
  return samples
}

export async function* streamOf(samples: ExportSample[], onEach?: (index: number) => void): AsyncGenerator<ExportSample> {
  for (const [index, sample] of samples.entries()) {
    onEach?.(index)
    await new Promise((resolve) => setImmediate(resolve))
    yield sample
  }
}

export async function tempDir(t: {after: (fn: () => Promise<void>) => void}, prefix = 'mlcap-export-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.after(() => rm(dir, {recursive: true, force: true}))
  return dir
}

/** Every file under dir as relative path → bytes, sorted. */
export async function readTree(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>()
  for (const entry of (await readdir(dir, {recursive: true, withFileTypes: true})).sort((a, b) => join(a.parentPath, a.name) < join(b.parentPath, b.name) ? -1 : 1)) {
    if (entry.isFile()) {
      const full = join(entry.parentPath, entry.name)
      out.set(relative(dir, full).split(sep).join('/'), await readFile(full))
    }
  }
  return out
}

/** Rewrites `<dir>/manifest.json` as `edit` returns it (edit may change the parsed manifest in place and return it), for tests of damaged manifests. */
export async function editManifest(dir: string, edit: (manifest: any) => unknown): Promise<void> {
  const path = join(dir, 'manifest.json')
  await writeFile(path, JSON.stringify(edit(JSON.parse(await readFile(path, 'utf8'))), null, 2))
}

/** System tar, for reading archives independently of the writer. */
export function tar(args: string[], cwd?: string): string {
  return execFileSync('tar', args, {cwd, encoding: 'utf8', env: {...process.env, TZ: 'UTC', LC_ALL: 'C'}})
}

/** ZSTD for hyparquet (Node 20 has no zstd in zlib): hyparquet-compressors' pure-JS decoder, independent of DuckDB. */
export {compressors} from 'hyparquet-compressors'
