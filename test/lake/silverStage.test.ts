/**
 * Issue 3, silver, end to end through the real stage: files made here → `ingest` (bronze) →
 * `runSilver` (real sharp, real DuckDB, real object store) → what silver.images,
 * silver.captions and silver.caption_sources say, and the derivative's own pixels.
 */
import {test} from 'node:test'
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import sharp from 'sharp'

import {CLEANING_VERSION} from '../../src/lake/captionClean.js'
import {runGold} from '../../src/lake/gold.js'
import {ingest} from '../../src/lake/ingest.js'
import {LakeLayout} from '../../src/lake/layout.js'
import {runSilver} from '../../src/lake/silver.js'
import {lakeCount, lakeRows, noise, tempDir} from '../helpers/lakeFixtures.js'

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex')

const solid = (width: number, height: number, background: string) => sharp({create: {width, height, channels: 3, background}})

async function redOverBlue(width: number, height: number): Promise<Buffer> {
  const bottom = await solid(width, height - Math.floor(height / 2), '#0000ff').png().toBuffer()
  return solid(width, height, '#ff0000')
    .composite([{input: bottom, top: Math.floor(height / 2), left: 0}])
    .png()
    .toBuffer()
}

const noisy = (width: number, height: number, seed: number) => sharp(noise(width, height, seed), {raw: {width, height, channels: 3}})

/** A JPEG whose headers (and EOI) are intact but whose scan names a Huffman table never defined: fails only on full decode. */
async function undecodableJpeg(seed: number): Promise<Buffer> {
  const jpeg = Buffer.from(await noisy(120, 90, seed).jpeg({quality: 80}).toBuffer())
  const sos = jpeg.indexOf(Buffer.from([0xff, 0xda]))
  assert.ok(sos > 0, 'fixture JPEG has a scan')
  const components = jpeg[sos + 4]!
  for (let c = 0; c < components; c++) jpeg[sos + 5 + c * 2 + 1] = 0x33 // DC/AC table 3: never defined
  return jpeg
}

async function pixel(image: Buffer, x: number, y: number): Promise<number[]> {
  const {data, info} = await sharp(image).raw().toBuffer({resolveWithObject: true})
  const i = (y * info.width + x) * info.channels
  return Array.from(data.subarray(i, i + 3))
}

function near(actual: number[], expected: number[], tolerance: number, what: string): void {
  for (let c = 0; c < 3; c++) {
    assert.ok(Math.abs(actual[c]! - expected[c]!) <= tolerance, `${what}: got [${actual}], expected about [${expected}]`)
  }
}

test('silver through the stage: orientation, odd formats, rejects with reasons, captions with provenance', async (t) => {
  const {dir, cleanup} = tempDir('mlcap-silver-')
  t.after(cleanup)
  const input = path.join(dir, 'input')
  const lake = path.join(dir, 'lake')
  mkdirSync(input, {recursive: true})
  const files = new Map<string, Buffer>()
  const put = (rel: string, bytes: Buffer | string) => {
    const file = path.join(input, rel)
    mkdirSync(path.dirname(file), {recursive: true})
    writeFileSync(file, bytes)
    if (typeof bytes !== 'string') files.set(rel, bytes)
  }

  // Displayed 80×120 (portrait), top red / bottom blue; stored turned 90° anticlockwise with orientation 6, GPS and a camera.
  const stored = await sharp(await redOverBlue(80, 120))
    .rotate(270)
    .withExif({IFD0: {Make: 'Camera', Model: 'X1'}, IFD3: {GPSLatitudeRef: 'N', GPSLatitude: '48/1 51/1 2403/100', GPSLongitudeRef: 'E', GPSLongitude: '2/1 21/1 72/10'}})
    .withMetadata({orientation: 6})
    .jpeg({quality: 92})
    .toBuffer()
  const storedMeta = await sharp(stored).metadata()
  assert.deepEqual([storedMeta.width, storedMeta.height, storedMeta.orientation], [120, 80, 6], 'fixture is stored sideways')
  assert.ok(storedMeta.exif, 'fixture carries EXIF')
  put('orient6.jpg', stored)
  put('orient6.txt', '  A red square   above a blue one ')

  put('cmyk.jpg', await solid(100, 100, '#d02020').toColourspace('cmyk').jpeg().toBuffer())
  put('deep.png', await noisy(100, 80, 1).toColourspace('rgb16').png().toBuffer())
  put('alpha.png', await sharp(Buffer.alloc(90 * 90 * 4, 0), {raw: {width: 90, height: 90, channels: 4}}).png().toBuffer())
  const red = await solid(100, 80, '#ff0000').png().toBuffer()
  const blue = await solid(100, 80, '#0000ff').png().toBuffer()
  put('anim.gif', await sharp([red, blue], {join: {animated: true}}).gif().toBuffer())
  put('pages.tif', await sharp([blue, red], {join: {animated: true}}).tiff().toBuffer())
  put('tiny.png', await noisy(20, 20, 2).png().toBuffer())
  put('pano.png', await noisy(1000, 50, 3).png().toBuffer())
  put('broken.jpg', await undecodableJpeg(4))

  // Hugging Face metadata.jsonl / metadata.csv and COCO captions.
  put('hf/a.png', await noisy(96, 64, 5).png().toBuffer())
  put('hf/b.png', await noisy(96, 64, 6).png().toBuffer())
  put('hf/metadata.jsonl', ['{"file_name": "a.png", "text": "A <b>noisy</b> picture."}', '{"file_name": "b.png", "text": "Can\'t generate caption"}', ''].join('\n'))
  put('csvset/c.png', await noisy(96, 64, 7).png().toBuffer())
  put('csvset/metadata.csv', 'file_name,caption\nc.png,"Static,  like an old TV"\n')
  put('coco/d.png', await noisy(96, 64, 8).png().toBuffer())
  put(
    'coco/captions.json',
    JSON.stringify({
      images: [{id: 1, file_name: 'd.png'}],
      annotations: [
        {id: 10, image_id: 1, caption: 'A dog on grass.'},
        {id: 11, image_id: 1, caption: '  A dog   on grass. '},
      ],
    }),
  )

  const layout = new LakeLayout(lake)
  const ingested = await ingest(layout, [input], {concurrency: 2})
  assert.equal(ingested.rejects.total, 0, `ingest accepted every fixture: ${JSON.stringify(ingested.rejects.byReason)}`)
  assert.equal(ingested.images.new, files.size)

  const started = Date.now()
  const summary = await runSilver(layout, {concurrency: 2})
  t.diagnostic(`silver over ${files.size} images in ${Date.now() - started} ms`)
  assert.equal(summary.status, 'succeeded')
  assert.equal(summary.added['silver.images'], files.size)

  const images = new Map((await lakeRows(lake, `SELECT * FROM silver.images`)).map((r) => [r.sha256 as string, r]))
  const row = (rel: string) => {
    const r = images.get(sha256(files.get(rel)!))
    assert.ok(r, `silver.images has ${rel}`)
    return r
  }
  const expectOk = ['orient6.jpg', 'cmyk.jpg', 'deep.png', 'alpha.png', 'anim.gif', 'pages.tif', 'hf/a.png', 'hf/b.png', 'csvset/c.png', 'coco/d.png']
  for (const rel of expectOk) assert.equal(row(rel).status, 'ok', `${rel}: ${row(rel).reason} ${row(rel).message}`)
  const expectRejected: Record<string, string> = {'tiny.png': 'too_small', 'pano.png': 'extreme_aspect_ratio', 'broken.jpg': 'undecodable'}
  for (const [rel, reason] of Object.entries(expectRejected)) {
    const r = row(rel)
    assert.deepEqual([r.status, r.reason], ['rejected', reason], `${rel}: ${r.message}`)
    assert.match(String(r.message), /^silver: /)
    assert.equal(r.normalized_sha256, null)
    assert.equal(r.run_id, summary.runId)
  }
  assert.deepEqual(summary.rejects, {too_small: 1, extreme_aspect_ratio: 1, undecodable: 1, caption_not_a_caption: 1})
  assert.deepEqual([row('pano.png').width, row('pano.png').height], [1000, 50])

  // Orientation: the derivative from the object store is upright, width/height swapped, no EXIF/GPS.
  const o = row('orient6.jpg')
  assert.deepEqual([o.width, o.height, o.normalized_width, o.normalized_height], [80, 120, 80, 120])
  const derivative = readFileSync(layout.objectPath(String(o.normalized_sha256)))
  assert.equal(sha256(derivative), o.normalized_sha256, 'the object is the bytes its name says')
  assert.equal(Number(o.normalized_bytes), derivative.length)
  const meta = await sharp(derivative).metadata()
  assert.deepEqual([meta.format, meta.width, meta.height], ['jpeg', 80, 120])
  assert.equal(meta.exif, undefined, 'no EXIF (so no GPS, no orientation) in the derivative')
  assert.equal(meta.orientation, undefined)
  assert.equal(meta.xmp, undefined)
  assert.equal(meta.icc, undefined)
  near(await pixel(derivative, 40, 10), [255, 0, 0], 10, 'top of the upright derivative')
  near(await pixel(derivative, 40, 110), [0, 0, 255], 10, 'bottom of the upright derivative')

  // Odd formats: every derivative is an 8-bit 3-channel sRGB JPEG; GIF/TIFF keep their first frame/page.
  for (const rel of ['cmyk.jpg', 'deep.png', 'alpha.png', 'anim.gif', 'pages.tif']) {
    const bytes = readFileSync(layout.objectPath(String(row(rel).normalized_sha256)))
    const m = await sharp(bytes).metadata()
    assert.deepEqual([m.format, m.space, m.channels, m.depth, m.hasAlpha], ['jpeg', 'srgb', 3, 'uchar', false], rel)
    assert.deepEqual([m.width, m.height], [Number(row(rel).normalized_width), Number(row(rel).normalized_height)], rel)
  }
  assert.deepEqual([row('anim.gif').width, row('anim.gif').height], [100, 80], 'GIF: one frame, not the strip')
  near(await pixel(readFileSync(layout.objectPath(String(row('anim.gif').normalized_sha256))), 50, 40), [255, 0, 0], 10, 'GIF first frame')
  near(await pixel(readFileSync(layout.objectPath(String(row('pages.tif').normalized_sha256))), 50, 40), [0, 0, 255], 10, 'TIFF first page')
  near(await pixel(readFileSync(layout.objectPath(String(row('alpha.png').normalized_sha256))), 45, 45), [255, 255, 255], 6, 'transparent → white')
  near(await pixel(readFileSync(layout.objectPath(String(row('cmyk.jpg').normalized_sha256))), 50, 50), [0xd0, 0x20, 0x20], 40, 'CMYK → sRGB')
  for (const rel of expectOk) {
    const r = row(rel)
    assert.match(String(r.phash), /^[0-9a-f]{16}$/, `${rel} phash`)
    assert.match(String(r.dhash), /^[0-9a-f]{16}$/, `${rel} dhash`)
    assert.equal(r.run_id, summary.runId)
  }

  // Captions: every convention flows to silver, cleaned, with provenance.
  const captions = await lakeRows(lake, `SELECT * FROM silver.captions ORDER BY source_kind, text`)
  const bronze = await lakeRows(lake, `SELECT caption_id, sha256, text, source_kind, source_file FROM bronze.captions`)
  assert.equal(bronze.length, 6)
  const ok = captions.filter((c) => c.status === 'ok')
  assert.deepEqual(
    ok.map((c) => [c.source_kind, c.text]),
    [
      ['coco', 'A dog on grass.'],
      ['csv', 'Static, like an old TV'],
      ['jsonl', 'A noisy picture.'],
      ['sidecar', 'A red square above a blue one'],
    ],
  )
  for (const c of captions) {
    const b = bronze.find((x) => x.caption_id === c.bronze_caption_id)
    assert.ok(b, `silver caption ${c.caption_id} names a bronze caption`)
    assert.equal(c.sha256, b.sha256)
    assert.equal(c.raw_text, b.text)
    assert.equal(c.source_kind, b.source_kind)
    assert.equal(c.source_file, b.source_file)
    assert.equal(c.source, 'human')
    assert.equal(Number(c.cleaning_version), CLEANING_VERSION)
    assert.equal(c.run_id, summary.runId)
  }
  assert.equal(ok.find((c) => c.source_kind === 'sidecar')!.source_file, path.join(input, 'orient6.txt'))
  assert.equal(ok.find((c) => c.source_kind === 'sidecar')!.sha256, sha256(files.get('orient6.jpg')!))

  // "Can't generate caption": rejected not_a_caption, text null.
  const refused = captions.filter((c) => c.status === 'rejected')
  assert.equal(refused.length, 1)
  assert.deepEqual([refused[0]!.reason, refused[0]!.text, refused[0]!.raw_text], ['not_a_caption', null, "Can't generate caption"])
  assert.equal(refused[0]!.sha256, sha256(files.get('hf/b.png')!))

  // Two COCO captions that clean to one text: one silver row, two lineage rows.
  const sources = await lakeRows(lake, `SELECT * FROM silver.caption_sources`)
  assert.equal(sources.length, bronze.length, 'every bronze caption has exactly one lineage row')
  const dog = ok.find((c) => c.source_kind === 'coco')!
  const dogSources = sources.filter((s) => s.caption_id === dog.caption_id)
  assert.equal(dogSources.length, 2)
  assert.deepEqual(
    dogSources.map((s) => s.bronze_caption_id).sort(),
    bronze.filter((b) => b.source_kind === 'coco').map((b) => b.caption_id).sort(),
  )
  assert.ok(dogSources.every((s) => s.status === 'ok' && s.run_id === summary.runId))

  // The refused caption never reaches gold, and neither do rejected images.
  const gold = await runGold(layout)
  assert.equal(gold.status, 'succeeded')
  const pairs = await lakeRows(lake, `SELECT p.*, c.status AS cstatus FROM gold.pairs p JOIN silver.captions c USING (caption_id)`)
  assert.equal(pairs.length, 4, JSON.stringify(pairs.map((p) => p.caption)))
  assert.ok(pairs.every((p) => p.cstatus === 'ok'))
  assert.ok(!pairs.some((p) => p.caption_id === refused[0]!.caption_id))
  assert.equal(
    await lakeCount(lake, `SELECT count(*) FROM gold.excluded WHERE caption_id = '${refused[0]!.caption_id}'`),
    0,
    'a rejected caption is not even a gold candidate',
  )
})

test('silver: a caption found again in another file keeps the provenance of the first one found, on incremental runs and on --full alike', async (t) => {
  const {dir, cleanup} = tempDir('mlcap-silver-firstfound-')
  t.after(cleanup)
  const image = await noisy(64, 48, 11).png().toBuffer()
  // The same caption twice, differing only in whitespace: one silver caption, two bronze ones.
  const sidecar = path.join(dir, 'sidecar')
  mkdirSync(sidecar)
  writeFileSync(path.join(sidecar, 'x.png'), image)
  writeFileSync(path.join(sidecar, 'x.txt'), 'A dog on the beach')
  const manifest = path.join(dir, 'manifest')
  mkdirSync(manifest)
  writeFileSync(path.join(manifest, 'x.png'), image)
  writeFileSync(path.join(manifest, 'metadata.jsonl'), `${JSON.stringify({file_name: 'x.png', text: '  A  dog on the\u00a0beach '})}\n`)
  const rows = (lake: string) =>
    lakeRows(lake, `SELECT * EXCLUDE (run_id, commit_id, created_at) FROM silver.captions ORDER BY caption_id`)
  // Both orders of arrival: in one of them the caption found second has the smaller bronze id.
  for (const [first, second] of [
    [sidecar, manifest],
    [manifest, sidecar],
  ]) {
    const layout = new LakeLayout(path.join(dir, `lake-${path.basename(first)}`))
    await ingest(layout, [first])
    await runSilver(layout, {concurrency: 2})
    await ingest(layout, [second])
    await runSilver(layout, {concurrency: 2})
    const incremental = await rows(layout.root)
    assert.equal(incremental.length, 1)
    assert.equal(incremental[0]!.source_file, path.join(first, path.basename(first) === 'sidecar' ? 'x.txt' : 'metadata.jsonl'), 'the first file found')
    assert.equal(await lakeCount(layout.root, 'SELECT count(*) FROM silver.caption_sources'), 2, 'both bronze captions in the lineage')
    await runSilver(layout, {concurrency: 2, full: true})
    assert.deepEqual(await rows(layout.root), incremental, `--full after ${path.basename(first)} first`)
  }
})
