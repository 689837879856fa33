/**
 * The captioning runtime end to end: real Transformers.js + onnxruntime + sharp, on the
 * tiny random-weight model written by test/helpers/tinyCaptioner.ts (no mocks, offline).
 */
import {test, before, after} from 'node:test'
import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import {writeFile} from 'node:fs/promises'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {promisify} from 'node:util'
import sharp from 'sharp'
import {openCaptioner, type Captioner} from '../../src/model/captioner.js'
import {decodeImage} from '../../src/model/decodeImage.js'
import {heicFile} from '../helpers/heicFile.js'
import {writeTinyCaptioner, writeTinyCaptionerCache} from '../helpers/tinyCaptioner.js'
import {distinctImages, png, pngRotated90, tempDir} from './fixtures.js'

const TOKENS = 6
let modelDir: string
let shared: Captioner

function captionOf(r: Awaited<ReturnType<Captioner['caption']>>[number]): string {
  assert.ok('caption' in r, `expected a caption, got ${JSON.stringify(r)}`)
  return r.caption
}

before(async () => {
  modelDir = path.join(await tempDir(), 'tiny')
  await writeTinyCaptioner(modelDir, {captionTokens: TOKENS})
  shared = await openCaptioner({model: modelDir, workers: 2, threadsPerWorker: 1})
})

after(async () => {
  await shared?.close()
})

test('captions one image with the known number of tokens and records provenance', async () => {
  const [r] = await shared.caption([await png(24, 16, 1)])
  assert.ok(r && 'caption' in r, JSON.stringify(r))
  assert.match(r.caption, new RegExp(`^[a-z]{${TOKENS}}$`))
  assert.equal(r.tokens, TOKENS)
  assert.ok(r.ms >= 0)
  const {info} = shared
  assert.equal(info.model, modelDir)
  assert.equal(info.source, 'folder')
  assert.equal(info.path, modelDir)
  assert.equal(info.dtype, 'fp32')
  assert.equal(info.task, 'image-to-text')
  assert.match(info.contentHash, /^[0-9a-f]{64}$/)
  assert.deepEqual(info.generation, {maxNewTokens: 20, numBeams: 1, doSample: false})
  assert.equal(info.workers, 2)
  assert.equal(info.threadsPerWorker, 1)
})

test('applies EXIF orientation before captioning', async () => {
  const oriented = await png(32, 16, 7, 6) // stored landscape, displayed rotated 90° clockwise
  const upright = await pngRotated90(32, 16, 7)
  const decoded = await decodeImage(oriented)
  assert.deepEqual([decoded.width, decoded.height], [16, 32])
  const [a, b, sideways] = await shared.caption([oriented, upright, await png(32, 16, 7)])
  assert.equal(captionOf(a!), captionOf(b!))
  assert.notEqual(captionOf(a!), captionOf(sideways!), 'the test image must caption differently when not rotated')
})

test('a HEIC (HEVC) photo is named as such, with how to convert it, not called undecodable bytes', async () => {
  await assert.rejects(decodeImage(heicFile(4032, 3024)), (error: any) => {
    assert.equal(error.code, 'IMAGE_DECODE_FAILED')
    assert.match(error.message, /^model: image is HEIC \(HEIF with HEVC compression, 4032×3024\); this build of libvips .*heif-convert photo\.heic photo\.jpg/)
    return true
  })
})

test('a batch keeps input order, equals one-by-one captions, and isolates bad inputs', async () => {
  const images = await distinctImages(13)
  const inputs = [...images.slice(0, 6), Buffer.from('not an image'), ...images.slice(6)]
  const batch = await shared.caption(inputs)
  assert.equal(batch.length, inputs.length)
  const bad = batch[6]!
  assert.ok('error' in bad)
  assert.equal(bad.error.code, 'IMAGE_DECODE_FAILED')
  assert.match(bad.error.message, /^model: image of 12 bytes could not be decoded/)
  const single: string[] = []
  for (const img of images) single.push(captionOf((await shared.caption([img]))[0]!))
  const batched = batch.filter((_, i) => i !== 6).map(captionOf)
  assert.deepEqual(batched, single)
  assert.ok(new Set(single).size >= 3, `expected distinct captions for distinct images, got ${single}`)
})

test('a batch mixing caption lengths: each row ends at its own EOS, as when captioned alone', async () => {
  const dir = path.join(await tempDir(), 'mixed')
  await writeTinyCaptioner(dir, {captionTokens: 3, extraTokens: 4})
  const c = await openCaptioner({model: dir, workers: 1})
  try {
    const images = await distinctImages(16)
    const batch = (await c.caption(images)).map(captionOf)
    const lengths = new Set(batch.map((t) => t.length))
    assert.deepEqual([...lengths].sort(), [3, 7], `expected both lengths in the batch, got ${batch}`)
    const single: string[] = []
    for (const img of images) single.push(captionOf((await c.caption([img]))[0]!))
    assert.deepEqual(batch, single)
  } finally {
    await c.close()
  }
})

test('concurrent caption calls on several workers each get their own results', async () => {
  const images = await distinctImages(10)
  const expected = (await shared.caption(images)).map(captionOf)
  const [a, b, c] = await Promise.all([shared.caption(images), shared.caption(images.slice(5)), shared.caption([])])
  assert.deepEqual(a!.map(captionOf), expected)
  assert.deepEqual(b!.map(captionOf), expected.slice(5))
  assert.deepEqual(c, [])
})

test('empty input and SVG are error results, never captions', async () => {
  const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>')
  const [empty, vector] = await shared.caption([Buffer.alloc(0), svg])
  assert.ok(empty && 'error' in empty && empty.error.code === 'IMAGE_DECODE_FAILED')
  assert.ok(vector && 'error' in vector && /SVG/.test(vector.error.message))
})

test('grey, alpha, 16-bit and CMYK images are converted to 8-bit RGB and captioned', async () => {
  const base = () => sharp({create: {width: 20, height: 12, channels: 4, background: {r: 200, g: 40, b: 90, alpha: 0.5}}})
  const inputs = [
    await base().greyscale().png().toBuffer(),
    await base().png().toBuffer(),
    await base().removeAlpha().toColourspace('rgb16').png().toBuffer(),
    await base().removeAlpha().toColourspace('cmyk').jpeg().toBuffer(),
  ]
  for (const r of await shared.caption(inputs)) assert.match(captionOf(r), new RegExp(`^[a-z]{${TOKENS}}$`))
})

test('maxNewTokens caps the caption; q8 loads the quantized files', async () => {
  const c = await openCaptioner({model: modelDir, workers: 1, maxNewTokens: 3, dtype: 'q8'})
  try {
    const [r] = await c.caption([await png(24, 16, 1)])
    assert.match(captionOf(r!), /^[a-z]{3}$/)
    assert.equal(c.info.dtype, 'q8')
    assert.notEqual(c.info.contentHash, shared.info.contentHash) // different files loaded (names are hashed)
  } finally {
    await c.close()
  }
})

test('the default hub model loads from a copied cache folder, offline, with its default dtype', async () => {
  const cacheDir = await tempDir()
  await writeTinyCaptionerCache(cacheDir, {captionTokens: 4})
  const c = await openCaptioner({cacheDir, workers: 1})
  try {
    assert.equal(c.info.model, 'Xenova/vit-gpt2-image-captioning')
    assert.equal(c.info.source, 'hub')
    assert.equal(c.info.dtype, 'q8')
    assert.equal(c.info.path, path.join(cacheDir, 'Xenova', 'vit-gpt2-image-captioning'))
    const [r] = await c.caption([await png(24, 16, 2)])
    assert.match(captionOf(r!), /^[a-z]{4}$/)
  } finally {
    await c.close()
  }
})

test('caption after close is refused; close is idempotent', async () => {
  const c = await openCaptioner({model: modelDir, workers: 1})
  await c.close()
  await c.close()
  await assert.rejects(c.caption([await png(8, 8, 1)]), {code: 'MODEL_CLOSED'})
})

test('close() during captioning: running batches finish, queued ones are MODEL_CLOSED, nothing crashes', async () => {
  const c = await openCaptioner({model: modelDir, workers: 1})
  const images = await distinctImages(40)
  // One batch of 8, then 4 more. Once the first is done the worker has started the next:
  // closing then finds one batch running and three queued, whatever the machine's speed.
  const head = c.caption(images.slice(0, 8))
  const pending = c.caption(images.slice(8))
  await head
  await c.close()
  const results = await pending
  assert.equal(results.length, 32)
  const closed = results.filter((r) => 'error' in r)
  assert.ok(closed.length > 0, 'expected queued batches to be cancelled')
  for (const r of closed) assert.ok('error' in r && r.error.code === 'MODEL_CLOSED', JSON.stringify(r))
  const finished = results.filter((r) => 'caption' in r)
  assert.ok(finished.length > 0, 'expected the running batch to finish')
  for (const r of finished) assert.match(captionOf(r), /^[a-z]+$/)
})

test('bad options are usage errors naming the value', async () => {
  await assert.rejects(openCaptioner({model: modelDir, dtype: 'fp64'}), (e: any) => {
    assert.equal(e.name, 'UsageError')
    assert.equal(e.exitCode, 2)
    assert.match(e.message, /^model: Expected one of fp32, fp16, q8.* for dtype but received "fp64"/)
    return true
  })
  await assert.rejects(openCaptioner({model: modelDir, numBeams: 3}), {name: 'UsageError', message: /numBeams but received 3/})
  await assert.rejects(openCaptioner({model: modelDir, workers: 0}), {name: 'UsageError', message: /workers but received 0/})
  await assert.rejects(openCaptioner({model: modelDir, maxNewTokens: 1.5}), {name: 'UsageError', message: /maxNewTokens/})
})

const execFileP = promisify(execFile)
const here = path.dirname(fileURLToPath(import.meta.url))

async function runChild(closeIt: boolean): Promise<{stdout: string; ms: number}> {
  const dir = await tempDir()
  const script = path.join(dir, 'child.mts')
  const captioner = JSON.stringify(path.join(here, '../../src/model/captioner.ts'))
  const fixtures = JSON.stringify(path.join(here, 'fixtures.ts'))
  await writeFile(
    script,
    `import {openCaptioner} from ${captioner}
import {png} from ${fixtures}
const c = await openCaptioner({model: ${JSON.stringify(modelDir)}, workers: 2})
const r = await c.caption([await png(24, 16, 1), await png(24, 16, 2)])
console.log(JSON.stringify(r.map((x) => 'caption' in x)))
${closeIt ? 'await c.close()' : '// close() forgotten on purpose'}
`,
  )
  const t0 = Date.now()
  const {stdout} = await execFileP(process.execPath, ['--import', 'tsx', script], {cwd: path.join(here, '../..'), timeout: 30_000})
  return {stdout, ms: Date.now() - t0}
}

test('a process exits by itself after close() (no open handles), and even without it', async () => {
  const [closed, forgotten] = await Promise.all([runChild(true), runChild(false)])
  assert.equal(closed.stdout.trim(), '[true,true]')
  assert.equal(forgotten.stdout.trim(), '[true,true]')
})
