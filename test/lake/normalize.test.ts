import {test} from 'node:test'
import assert from 'node:assert/strict'
import sharp from 'sharp'
import {DEFAULT_NORMALIZE_OPTIONS, normalizeImage, type NormalizeResult} from '../../src/lake/normalize.js'
import {heicFile} from '../helpers/heicFile.js'

type Ok = Extract<NormalizeResult, {status: 'ok'}>

function ok(r: NormalizeResult): Ok {
  if (r.status !== 'ok') assert.fail(`expected ok, got ${r.reason}: ${r.message}`)
  return r
}

function rejectedWith(r: NormalizeResult, reason: string): void {
  assert.equal(r.status, 'rejected', `expected reject ${reason}`)
  if (r.status === 'rejected') {
    assert.equal(r.reason, reason, r.message)
    assert.match(r.message, /^silver: /)
  }
}

async function pixel(image: Buffer, x: number, y: number): Promise<number[]> {
  const {data, info} = await sharp(image).raw().toBuffer({resolveWithObject: true})
  const i = (y * info.width + x) * info.channels
  return Array.from(data.subarray(i, i + info.channels))
}

function near(actual: number[], expected: number[], tolerance: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: channels ${actual} vs ${expected}`)
  for (let c = 0; c < expected.length; c++)
    assert.ok(Math.abs(actual[c]! - expected[c]!) <= tolerance, `${what}: got [${actual}], expected about [${expected}] ±${tolerance}`)
}

const solid = (width: number, height: number, background: string) =>
  sharp({create: {width, height, channels: 3, background}})

/** width×height, top half red, bottom half blue. */
async function redOverBlue(width: number, height: number) {
  const bottom = await solid(width, height - Math.floor(height / 2), '#0000ff').png().toBuffer()
  return solid(width, height, '#ff0000').composite([{input: bottom, top: Math.floor(height / 2), left: 0}])
}

/** JPEG quantization table 0 (luma) in zig-zag order, from the first DQT segment. */
function lumaQuantTable(jpeg: Buffer): number[] {
  for (let i = 2; i + 4 < jpeg.length; ) {
    assert.equal(jpeg[i], 0xff, 'JPEG marker expected')
    const marker = jpeg[i + 1]!
    const length = jpeg.readUInt16BE(i + 2)
    if (marker === 0xdb) {
      const pq = jpeg[i + 4]! >> 4
      assert.equal(pq, 0, '8-bit table')
      return Array.from(jpeg.subarray(i + 5, i + 5 + 64))
    }
    i += 2 + length
  }
  throw new Error('no DQT segment')
}

/** The IJG (libjpeg) luma table scaled for a quality, in zig-zag order. */
function ijgLumaTable(quality: number): number[] {
  const natural = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22,
    37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
  ]
  const zigzag = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57,
    50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
  ]
  const scale = quality < 50 ? 5000 / quality : 200 - quality * 2
  return zigzag.map((z) => Math.min(255, Math.max(1, Math.floor((natural[z]! * scale + 50) / 100))))
}

test('defaults: 512 px, JPEG q90, white background, 32 px, 6:1', () => {
  assert.deepEqual(
    {...DEFAULT_NORMALIZE_OPTIONS},
    {maxSide: 512, format: 'jpeg', quality: 90, background: '#ffffff', minSide: 32, maxAspectRatio: 6, maxPixels: 100_000_000},
  )
})

test('EXIF orientation 6 comes out upright (red on top), checked on pixels', async () => {
  const upright = await (await redOverBlue(400, 300)).png().toBuffer()
  // Orientation 6 = "rotate 90° clockwise to display": store the picture turned 90° anticlockwise.
  const stored = await sharp(upright).rotate(270).withMetadata({orientation: 6}).jpeg().toBuffer()
  const meta = await sharp(stored).metadata()
  assert.deepEqual([meta.width, meta.height, meta.orientation], [300, 400, 6])
  const r = ok(await normalizeImage(stored))
  assert.deepEqual([r.original.width, r.original.height, r.original.orientation], [400, 300, 6])
  assert.deepEqual([r.normalized.width, r.normalized.height], [400, 300])
  near(await pixel(r.output, 200, 30), [255, 0, 0], 8, 'top')
  near(await pixel(r.output, 200, 270), [0, 0, 255], 8, 'bottom')
  assert.ok(Math.abs(r.aspectRatio - 4 / 3) < 1e-9)
})

test('output is JPEG q90 with no EXIF, orientation, GPS, XMP or ICC', async () => {
  const input = await (await redOverBlue(800, 600))
    .withExif({IFD0: {Copyright: 'someone', Make: 'Camera'}, IFD3: {GPSLatitudeRef: 'N', GPSLatitude: '48/1 51/1 0/1'}})
    .withIccProfile('p3')
    .withMetadata({orientation: 1})
    .jpeg({quality: 95})
    .toBuffer()
  const inMeta = await sharp(input).metadata()
  assert.ok(inMeta.exif !== undefined && inMeta.icc !== undefined, 'fixture has EXIF and ICC')
  const r = ok(await normalizeImage(input))
  const meta = await sharp(r.output).metadata()
  assert.equal(meta.format, 'jpeg')
  assert.equal(meta.exif, undefined)
  assert.equal(meta.orientation, undefined)
  assert.equal(meta.xmp, undefined)
  assert.equal(meta.iptc, undefined)
  assert.equal(meta.icc, undefined)
  assert.equal(meta.space, 'srgb')
  assert.equal(meta.chromaSubsampling, '4:2:0')
  assert.deepEqual(lumaQuantTable(r.output), ijgLumaTable(90), 'quantization table is the IJG table at quality 90')
  assert.equal(r.normalized.bytes, r.output.length)
  assert.equal(r.normalized.format, 'jpeg')
})

test('longer side becomes 512 (landscape and portrait), aspect kept', async () => {
  const land = ok(await normalizeImage(await solid(2000, 1500, '#336699').jpeg().toBuffer()))
  assert.deepEqual([land.normalized.width, land.normalized.height], [512, 384])
  assert.deepEqual([land.original.width, land.original.height], [2000, 1500])
  const port = ok(await normalizeImage(await solid(1500, 2000, '#336699').png().toBuffer()))
  assert.deepEqual([port.normalized.width, port.normalized.height], [384, 512])
  const out = await sharp(port.output).metadata()
  assert.deepEqual([out.width, out.height], [384, 512])
})

test('never upscaled', async () => {
  const r = ok(await normalizeImage(await solid(200, 100, '#808080').jpeg().toBuffer()))
  assert.deepEqual([r.normalized.width, r.normalized.height], [200, 100])
  const exact = ok(await normalizeImage(await solid(512, 40, '#808080').jpeg().toBuffer(), {maxAspectRatio: 20}))
  assert.deepEqual([exact.normalized.width, exact.normalized.height], [512, 40])
})

test('CMYK JPEG → sRGB with about the right colours', async () => {
  const cmyk = await solid(200, 200, '#d02020').toColourspace('cmyk').jpeg().toBuffer()
  assert.equal((await sharp(cmyk).metadata()).space, 'cmyk')
  const r = ok(await normalizeImage(cmyk))
  assert.equal(r.original.space, 'cmyk')
  const [red, green, blue] = await pixel(r.output, 100, 100)
  assert.ok(red! > 170 && green! < 70 && blue! < 70, `CMYK red came out as ${[red, green, blue]}`)
  assert.equal((await sharp(r.output).metadata()).channels, 3)
})

test('embedded ICC profile is honoured (Display P3 → sRGB)', async () => {
  // sRGB pure red converted into Display P3 (≈ 234,51,35 there), with the P3 profile attached.
  const p3 = await solid(120, 120, '#ff0000').withIccProfile('p3').png().toBuffer()
  const stored = await sharp(p3).keepIccProfile().raw().toBuffer() // the values as stored, not converted
  near(Array.from(stored.subarray(0, 3)), [234, 51, 35], 3, 'stored P3 values')
  const r = ok(await normalizeImage(p3))
  assert.equal(r.original.hasProfile, true)
  near(await pixel(r.output, 60, 60), [255, 0, 0], 8, 'P3 red back in sRGB')
})

test('16-bit PNG → 8-bit sRGB', async () => {
  const raw = new Uint16Array(100 * 80 * 3)
  for (let i = 0; i < 100 * 80; i++) raw.set([65535, 32768, 0], i * 3)
  const png16 = await sharp(raw, {raw: {width: 100, height: 80, channels: 3}}).toColourspace('rgb16').png().toBuffer()
  const inMeta = await sharp(png16).metadata()
  assert.deepEqual([inMeta.depth, inMeta.bitsPerSample], ['ushort', 16])
  const r = ok(await normalizeImage(png16))
  assert.equal(r.original.space, 'rgb16')
  const meta = await sharp(r.output).metadata()
  assert.deepEqual([meta.depth, meta.channels, meta.space], ['uchar', 3, 'srgb'])
  near(await pixel(r.output, 50, 40), [255, 128, 0], 6, '16-bit orange')
})

test('greyscale and 16-bit greyscale → 3-channel sRGB', async () => {
  const grey = await solid(100, 100, '#808080').toColourspace('b-w').jpeg().toBuffer()
  assert.equal((await sharp(grey).metadata()).channels, 1)
  const r = ok(await normalizeImage(grey))
  assert.equal((await sharp(r.output).metadata()).channels, 3)
  near(await pixel(r.output, 50, 50), [128, 128, 128], 3, 'grey')
  const grey16 = await sharp(new Uint16Array(64 * 64).fill(40000), {raw: {width: 64, height: 64, channels: 1}}).toColourspace('grey16').png().toBuffer()
  const r16 = ok(await normalizeImage(grey16))
  near(await pixel(r16.output, 10, 10), [156, 156, 156], 3, 'grey16')
})

test('alpha is flattened onto the background (default white, or as given)', async () => {
  // Left half opaque blue, right half fully transparent red.
  const rgba = Buffer.alloc(100 * 60 * 4)
  for (let y = 0; y < 60; y++)
    for (let x = 0; x < 100; x++) rgba.set(x < 50 ? [0, 0, 255, 255] : [255, 0, 0, 0], (y * 100 + x) * 4)
  const png = await sharp(rgba, {raw: {width: 100, height: 60, channels: 4}}).png().toBuffer()
  const white = ok(await normalizeImage(png))
  assert.equal(white.original.hasAlpha, true)
  near(await pixel(white.output, 80, 30), [255, 255, 255], 3, 'transparent → white')
  near(await pixel(white.output, 20, 30), [0, 0, 255], 6, 'opaque kept')
  const green = ok(await normalizeImage(png, {background: '#00ff00', format: 'png'}))
  assert.deepEqual(await pixel(green.output, 80, 30), [0, 255, 0])
  assert.equal((await sharp(green.output).metadata()).channels, 3)
})

test('animated GIF → first frame; multi-page TIFF → first page', async () => {
  const red = await solid(100, 80, '#ff0000').png().toBuffer()
  const blue = await solid(100, 80, '#0000ff').png().toBuffer()
  const gif = await sharp([red, blue], {join: {animated: true}}).gif().toBuffer()
  const g = ok(await normalizeImage(gif))
  assert.deepEqual([g.original.pages, g.original.width, g.original.height], [2, 100, 80])
  assert.deepEqual([g.normalized.width, g.normalized.height], [100, 80])
  near(await pixel(g.output, 50, 40), [255, 0, 0], 8, 'GIF first frame')

  const tiff = await sharp([blue, red], {join: {animated: true}}).tiff().toBuffer()
  assert.equal((await sharp(tiff).metadata()).pages, 2)
  const t = ok(await normalizeImage(tiff))
  assert.deepEqual([t.original.pages, t.normalized.width, t.normalized.height], [2, 100, 80])
  near(await pixel(t.output, 50, 40), [0, 0, 255], 8, 'TIFF first page')
})

test('rejects: too small, extreme aspect ratio, too many pixels — from the header, with the original size', async () => {
  const tiny = await normalizeImage(await solid(20, 100, '#808080').png().toBuffer())
  rejectedWith(tiny, 'too_small')
  assert.match(tiny.status === 'rejected' ? tiny.message : '', /shorter side 20 px is below minSide 32/)
  assert.deepEqual(tiny.status === 'rejected' && [tiny.original?.width, tiny.original?.height], [20, 100])

  const panorama = await normalizeImage(await solid(4000, 200, '#808080').jpeg().toBuffer())
  rejectedWith(panorama, 'extreme_aspect_ratio')
  assert.match(panorama.status === 'rejected' ? panorama.message : '', /aspect ratio 20\.00:1, above maxAspectRatio 6:1/)

  const big = await normalizeImage(await solid(3000, 2000, '#808080').jpeg().toBuffer(), {maxPixels: 5_000_000})
  rejectedWith(big, 'too_many_pixels')
  assert.match(big.status === 'rejected' ? big.message : '', /3000×2000 = 6\.0 MP, more than maxPixels 5\.0 MP/)
})

test('rejects undecodable: truncated JPEG, garbage, empty, SVG', async () => {
  const jpeg = await sharp({create: {width: 800, height: 600, channels: 3, background: '#000000', noise: {type: 'gaussian', mean: 128, sigma: 40}}}).jpeg().toBuffer()
  const truncated = await normalizeImage(jpeg.subarray(0, Math.floor(jpeg.length * 0.6)))
  rejectedWith(truncated, 'undecodable')
  assert.match(truncated.status === 'rejected' ? truncated.message : '', /could not be decoded: .*truncated or corrupt/)
  assert.equal(truncated.status === 'rejected' && truncated.original?.width, 800)

  rejectedWith(await normalizeImage(Buffer.from('definitely not an image, just some text bytes')), 'undecodable')
  rejectedWith(await normalizeImage(Buffer.alloc(0)), 'undecodable')
  const svg = await normalizeImage(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><rect width="100" height="100"/></svg>'))
  rejectedWith(svg, 'undecodable')
  assert.match(svg.status === 'rejected' ? svg.message : '', /SVG/)
})

test('HEIC (HEVC) photos: rejected unsupported_codec, not "corrupt", with the size and how to convert them', async () => {
  const heic = await normalizeImage(heicFile(4032, 3024))
  rejectedWith(heic, 'unsupported_codec')
  assert.ok(heic.status === 'rejected')
  assert.match(heic.message, /^silver: image is HEIC \(HEIF with HEVC compression, 4032×3024\); this build of libvips \(from sharp\) has no HEVC decoder/)
  assert.match(heic.message, /heif-convert photo\.heic photo\.jpg.*Then ingest the JPEGs\.$/)
  assert.doesNotMatch(heic.message, /corrupt|truncated/)
  assert.deepEqual([heic.original?.format, heic.original?.width, heic.original?.height], ['heif', 4032, 3024])
})

test('quality measures: flat vs textured vs blurred, brightness and contrast', async () => {
  const flat = ok(await normalizeImage(await solid(300, 200, '#404040').png().toBuffer()))
  assert.ok(Math.abs(flat.brightness - 64) < 1, `brightness ${flat.brightness}`)
  assert.ok(flat.contrast < 0.5, `contrast ${flat.contrast}`)
  assert.ok(flat.sharpness < 0.5, `sharpness ${flat.sharpness}`)

  const halves = ok(await normalizeImage(await (await redOverBlue(300, 200)).png().toBuffer(), {format: 'png'}))
  // Luma of red 76, of blue 29: mean 52.5, stddev 23.5.
  assert.ok(Math.abs(halves.brightness - 52.5) < 1, `brightness ${halves.brightness}`)
  assert.ok(Math.abs(halves.contrast - 23.5) < 1, `contrast ${halves.contrast}`)

  const noise = await sharp({create: {width: 512, height: 512, channels: 3, background: '#000000', noise: {type: 'gaussian', mean: 128, sigma: 30}}}).png().toBuffer()
  const sharpImg = ok(await normalizeImage(noise, {format: 'png'}))
  const blurred = ok(await normalizeImage(await sharp(noise).blur(3).png().toBuffer(), {format: 'png'}))
  assert.ok(sharpImg.sharpness > 50 * blurred.sharpness, `sharp ${sharpImg.sharpness} vs blurred ${blurred.sharpness}`)
  assert.equal(typeof sharpImg.phash, 'bigint')
  assert.ok(sharpImg.phash >= 0n && sharpImg.phash < 1n << 64n)
})

test('webp and png output formats', async () => {
  const input = await (await redOverBlue(600, 400)).jpeg().toBuffer()
  const webp = ok(await normalizeImage(input, {format: 'webp', quality: 80}))
  assert.equal((await sharp(webp.output).metadata()).format, 'webp')
  const png = ok(await normalizeImage(input, {format: 'png'}))
  assert.equal((await sharp(png.output).metadata()).format, 'png')
  assert.deepEqual([png.normalized.width, png.normalized.height], [512, 341])
})

test('invalid options throw with the name, the expectation and the value', async () => {
  const input = await solid(64, 64, '#000000').png().toBuffer()
  await assert.rejects(normalizeImage(input, {maxSide: 0}), /Expected integer ≥ 1 for maxSide but received 0/)
  await assert.rejects(normalizeImage(input, {quality: 101}), /Expected integer between 1 and 100 for quality but received 101/)
  await assert.rejects(normalizeImage(input, {format: 'gif' as 'png'}), /Expected one of jpeg, webp, png for format but received "gif"/)
  await assert.rejects(normalizeImage(input, {maxAspectRatio: 0.5}), /for maxAspectRatio but received 0\.5/)
})

test('the header bronze recorded at ingest gives the same result as reading it again, and is not trusted where it cannot', async () => {
  const {probeImage} = await import('../../src/lake/probe.js')
  const known = async (bytes: Buffer) => {
    const p = await probeImage(bytes, {includeGps: false, maxPixels: 100_000_000})
    return {format: p.format, width: p.width, height: p.height, orientation: p.orientation, pages: p.pages, space: p.colorSpace, hasAlpha: p.hasAlpha}
  }
  const inputs: Array<[string, Buffer]> = [
    ['JPEG, EXIF orientation 6', await (await redOverBlue(300, 200)).jpeg().withMetadata({orientation: 6}).toBuffer()],
    ['JPEG, orientation 3', await (await redOverBlue(300, 200)).jpeg().withMetadata({orientation: 3}).toBuffer()],
    ['PNG with alpha', await sharp({create: {width: 90, height: 60, channels: 4, background: '#ff000080'}}).png().toBuffer()],
    ['WebP', await solid(640, 480, '#336699').webp().toBuffer()],
    ['greyscale JPEG', await solid(200, 150, '#777777').greyscale().jpeg().toBuffer()],
    ['CMYK JPEG', await solid(200, 150, '#336699').toColourspace('cmyk').jpeg().toBuffer()],
    ['too small PNG', await solid(20, 200, '#336699').png().toBuffer()],
    ['animated GIF (read again)', await sharp([await solid(90, 60, '#ff0000').png().toBuffer(), await solid(90, 60, '#00ff00').png().toBuffer()], {join: {animated: true}}).gif().toBuffer()],
  ]
  for (const [what, bytes] of inputs) {
    const header = await known(bytes)
    const fromBronze = await normalizeImage(bytes, {}, header)
    const readAgain = await normalizeImage(bytes)
    if (readAgain.status === 'ok' || readAgain.original) delete (readAgain.original as {hasProfile?: boolean}).hasProfile
    if (fromBronze.original && header.pages > 1) delete (fromBronze.original as {hasProfile?: boolean}).hasProfile
    assert.deepEqual(fromBronze, readAgain, what)
  }
  // A header that is not usable (a lake row with nulls read as 0) means: read it again, not reject.
  const photo = await solid(640, 480, '#336699').jpeg().toBuffer()
  const r = ok(await normalizeImage(photo, {}, {format: 'jpeg', width: 0, height: 0, orientation: null, pages: 1, space: 'srgb', hasAlpha: false}))
  assert.deepEqual([r.original.width, r.original.height, r.original.hasProfile], [640, 480, false])
})
