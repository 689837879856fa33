/**
 * A folder of hostile inputs, made by code, each paired with the reject reason mlcap must
 * give it, plus good images and captions beside them that must go through untouched.
 *
 *   <dir>/input/     the folder to ingest (walk root)
 *   <dir>/outside/   targets of links that point outside the input
 *
 * `stage` says which building block is expected to refuse the case:
 *   walk     walkInputs yields the reject
 *   image    sniffImageFormat → checkComplete → probeImage, in that order
 *   caption  parseCaptionFile yields the reject (at `locator` when given)
 */
import {promises as fs, constants as fsConstants} from 'node:fs'
import path from 'node:path'
import zlib from 'node:zlib'
import sharp from 'sharp'
import type {RejectReason} from '../../src/lake/rejectReasons.js'

export type HostileCase = {
  /** The path the reject names: the file itself, the link, or the caption source. */
  path: string
  expectedReason: RejectReason
  stage: 'walk' | 'image' | 'caption'
  /** For caption sources: where in the file (e.g. 'line 2'); undefined = the whole file. */
  locator?: string
  note: string
}

export type GoodImage = {path: string; width: number; height: number}
export type GoodCaption = {sourceFile: string; imagePath: string; text: string}

export type HostileCorpus = HostileCase[] & {
  /** The walk root. */
  input: string
  /** Images that must pass sniff, completeness and probe. */
  good: GoodImage[]
  /** Captions that must come out of the caption sources unchanged. */
  goodCaptions: GoodCaption[]
  /** Cases that could not be staged honestly here, and why (e.g. chmod 000 while running as root). */
  skipped: Array<{name: string; why: string}>
}

/** Deterministic noise, so JPEGs have real entropy-coded data to cut. */
function noise(width: number, height: number, seed: number): Buffer {
  const raw = Buffer.alloc(width * height * 3)
  let x = seed >>> 0
  for (let i = 0; i < raw.length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0
    raw[i] = x >>> 24
  }
  return raw
}

async function goodJpeg(width: number, height: number, seed: number): Promise<Buffer> {
  return sharp(noise(width, height, seed), {raw: {width, height, channels: 3}}).jpeg({quality: 80}).toBuffer()
}

async function goodPng(width: number, height: number, seed: number): Promise<Buffer> {
  return sharp(noise(width, height, seed), {raw: {width, height, channels: 3}}).png().toBuffer()
}

function pngChunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4)
  length.writeUInt32BE(data.length)
  const typeAndData = Buffer.concat([Buffer.from(type, 'latin1'), data])
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(zlib.crc32(typeAndData))
  return Buffer.concat([length, typeAndData, crc])
}

/** A complete, tiny PNG whose IHDR declares width × height pixels: a decompression bomb's header. */
export function bombPng(width = 30000, height = 30000): Buffer {
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr[8] = 8 // bit depth
  ihdr[9] = 2 // RGB
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
  // Only the first rows are present; the header alone must get the file refused.
  const idat = zlib.deflateSync(Buffer.alloc(1 + width * 3), {level: 9})
  return Buffer.concat([signature, pngChunk('IHDR', ihdr), pngChunk('IDAT', idat), pngChunk('IEND', Buffer.alloc(0))])
}

const SVG = `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="64" height="64">
  <image xlink:href="file:///etc/passwd" width="64" height="64"/>
  <rect width="64" height="64" fill="red"/>
</svg>
`

/** Can this process be denied reading a chmod 000 file? (No when running as root / with CAP_DAC_OVERRIDE.) */
async function chmodDenies(probeFile: string): Promise<boolean> {
  await fs.writeFile(probeFile, 'x')
  await fs.chmod(probeFile, 0o000)
  try {
    await fs.access(probeFile, fsConstants.R_OK)
    return false
  } catch {
    return true
  } finally {
    await fs.chmod(probeFile, 0o600)
    await fs.rm(probeFile)
  }
}

export async function makeHostileCorpus(dir: string): Promise<HostileCorpus> {
  const input = path.join(dir, 'input')
  const outside = path.join(dir, 'outside')
  await fs.mkdir(input, {recursive: true})
  await fs.mkdir(outside, {recursive: true})
  const cases: HostileCase[] = []
  const good: GoodImage[] = []
  const goodCaptions: GoodCaption[] = []
  const skipped: Array<{name: string; why: string}> = []
  const at = (...parts: string[]): string => path.join(input, ...parts)
  const add = (c: HostileCase): void => {
    cases.push(c)
  }
  const writeGood = async (rel: string, bytes: Buffer, width: number, height: number): Promise<string> => {
    const p = at(rel)
    await fs.mkdir(path.dirname(p), {recursive: true})
    await fs.writeFile(p, bytes)
    good.push({path: p, width, height})
    return p
  }

  // --- good images that must go through ---------------------------------------------
  await writeGood('good/noise.jpg', await goodJpeg(48, 32, 1), 48, 32)
  await writeGood('good/noise.png', await goodPng(20, 30, 2), 20, 30)
  await writeGood('good/solid.webp', await sharp({create: {width: 24, height: 24, channels: 3, background: '#3366cc'}}).webp().toBuffer(), 24, 24)

  // --- image bytes --------------------------------------------------------------------
  const jpeg = await goodJpeg(64, 64, 3)
  await fs.writeFile(at('truncated.jpg'), jpeg.subarray(0, Math.floor(jpeg.length * 0.7)))
  add({path: at('truncated.jpg'), expectedReason: 'truncated', stage: 'image', note: 'JPEG cut at 70%, before its EOI marker'})

  const png = await goodPng(64, 64, 4)
  await fs.writeFile(at('truncated.png'), png.subarray(0, png.length - 40))
  add({path: at('truncated.png'), expectedReason: 'truncated', stage: 'image', note: 'PNG without its last 40 bytes (IDAT end and IEND)'})

  await fs.writeFile(at('empty.jpg'), Buffer.alloc(0))
  add({path: at('empty.jpg'), expectedReason: 'empty_file', stage: 'image', note: 'zero bytes'})

  await fs.writeFile(at('text.jpg'), 'This is not a JPEG, it is a note someone saved with the wrong name.\n')
  add({path: at('text.jpg'), expectedReason: 'not_an_image', stage: 'image', note: 'plain text named .jpg'})

  await fs.writeFile(at('drawing.svg'), SVG)
  add({path: at('drawing.svg'), expectedReason: 'svg_refused', stage: 'image', note: 'SVG with an external file reference'})
  await fs.writeFile(at('drawing-svg.png'), SVG)
  add({path: at('drawing-svg.png'), expectedReason: 'svg_refused', stage: 'image', note: 'SVG named .png'})

  await fs.writeFile(at('bomb.png'), bombPng())
  add({path: at('bomb.png'), expectedReason: 'too_many_pixels', stage: 'image', note: 'tiny PNG whose IHDR declares 30000×30000'})

  // BMP header (14-byte file header + 40-byte info header) of a 1×1 24-bit image.
  const bmp = Buffer.alloc(58)
  bmp.write('BM', 0, 'latin1')
  bmp.writeUInt32LE(58, 2)
  bmp.writeUInt32LE(54, 10)
  bmp.writeUInt32LE(40, 14)
  bmp.writeInt32LE(1, 18)
  bmp.writeInt32LE(1, 22)
  bmp.writeUInt16LE(1, 26)
  bmp.writeUInt16LE(24, 28)
  await fs.writeFile(at('old.bmp'), bmp)
  add({path: at('old.bmp'), expectedReason: 'unsupported_format', stage: 'image', note: 'a BMP image'})

  // SOI, an APP0 segment, EOI: complete by structure, but no image inside.
  const noImage = Buffer.concat([
    Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10]),
    Buffer.from('JFIF\0', 'latin1'),
    Buffer.from([0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00]),
    Buffer.from([0xff, 0xd9]),
  ])
  await fs.writeFile(at('no-frame.jpg'), noImage)
  add({path: at('no-frame.jpg'), expectedReason: 'corrupt_header', stage: 'image', note: 'JPEG with SOI, APP0 and EOI but no frame'})

  // --- file system --------------------------------------------------------------------
  await fs.writeFile(path.join(outside, 'secret.jpg'), await goodJpeg(16, 16, 5))
  await fs.symlink(path.join(outside, 'secret.jpg'), at('outside-link.jpg'))
  add({path: at('outside-link.jpg'), expectedReason: 'symlink_outside_root', stage: 'walk', note: 'link to an image outside the input'})
  await fs.symlink(outside, at('outside-dir'))
  add({path: at('outside-dir'), expectedReason: 'symlink_outside_root', stage: 'walk', note: 'link to a folder outside the input'})

  await fs.mkdir(at('loop'), {recursive: true})
  await fs.symlink('..', at('loop', 'back'))
  add({path: at('loop', 'back'), expectedReason: 'symlink_loop', stage: 'walk', note: 'link to its own grandparent folder (a cycle)'})
  await fs.symlink('ping', at('pong'))
  await fs.symlink('pong', at('ping'))
  add({path: at('ping'), expectedReason: 'symlink_loop', stage: 'walk', note: 'two links pointing at each other (ELOOP)'})
  add({path: at('pong'), expectedReason: 'symlink_loop', stage: 'walk', note: 'two links pointing at each other (ELOOP)'})

  await fs.symlink('does-not-exist.jpg', at('dangling.jpg'))
  add({path: at('dangling.jpg'), expectedReason: 'symlink_broken', stage: 'walk', note: 'link to a missing file'})

  // A good image whose name is Latin-1, not UTF-8 (0xE9 is é in Latin-1): the path mlcap records is the lossy text.
  await fs.writeFile(Buffer.concat([Buffer.from(at('caf')), Buffer.from([0xe9]), Buffer.from('.jpg')]), await goodJpeg(16, 16, 8))
  add({path: at('caf\uFFFD.jpg'), expectedReason: 'name_not_utf8', stage: 'walk', note: 'a file name in Latin-1'})

  if (await chmodDenies(path.join(dir, '.chmod-probe'))) {
    await fs.writeFile(at('unreadable.jpg'), await goodJpeg(16, 16, 6))
    await fs.chmod(at('unreadable.jpg'), 0o000)
    add({path: at('unreadable.jpg'), expectedReason: 'unreadable', stage: 'walk', note: 'chmod 000 file'})
    await fs.mkdir(at('locked'))
    await fs.writeFile(at('locked', 'inside.jpg'), await goodJpeg(16, 16, 7))
    await fs.chmod(at('locked'), 0o000)
    add({path: at('locked'), expectedReason: 'unreadable', stage: 'walk', note: 'chmod 000 folder'})
  } else {
    const why = `this process (uid ${process.getuid?.() ?? '?'}) can read chmod 000 files (root or CAP_DAC_OVERRIDE), so the unreadable cases cannot be staged`
    skipped.push({name: 'unreadable.jpg', why}, {name: 'locked/', why})
  }

  // --- captions -----------------------------------------------------------------------
  const captions = at('captions')
  await writeGood('captions/ok.jpg', await goodJpeg(32, 24, 8), 32, 24)
  await writeGood('captions/escape.jpg', await goodJpeg(16, 16, 9), 16, 16)
  const manifest = path.join(captions, 'metadata.jsonl')
  await fs.writeFile(
    manifest,
    [
      JSON.stringify({file_name: 'ok.jpg', text: 'a noisy square', source: 'corpus'}),
      '{"file_name": "ok.jpg", "text": "unterminated',
      JSON.stringify({file_name: 'missing.jpg', text: 'an image that is not there'}),
      JSON.stringify({file_name: '../escape.jpg', text: 'trying to leave the folder'}),
      JSON.stringify({file_name: path.join(outside, 'secret.jpg'), text: 'an absolute path'}),
      JSON.stringify({file_name: 'ok.jpg', caption: 'a second caption for the noisy square'}),
      '',
    ].join('\n'),
  )
  // '../escape.jpg' from captions/ is input/escape.jpg: inside the walk root, outside the manifest's folder.
  await fs.copyFile(at('captions', 'escape.jpg'), at('escape.jpg'))
  good.push({path: at('escape.jpg'), width: 16, height: 16})
  const okReal = await fs.realpath(at('captions', 'ok.jpg'))
  goodCaptions.push({sourceFile: manifest, imagePath: okReal, text: 'a noisy square'})
  goodCaptions.push({sourceFile: manifest, imagePath: okReal, text: 'a second caption for the noisy square'})
  add({path: manifest, locator: 'line 2', expectedReason: 'malformed_jsonl', stage: 'caption', note: 'JSON cut in the middle of a string'})
  add({path: manifest, locator: 'line 3', expectedReason: 'manifest_missing_file', stage: 'caption', note: 'row naming a file that does not exist'})
  add({path: manifest, locator: 'line 4', expectedReason: 'manifest_path_escape', stage: 'caption', note: "row naming '../escape.jpg'"})
  add({path: manifest, locator: 'line 5', expectedReason: 'manifest_path_escape', stage: 'caption', note: 'row naming an absolute path'})

  await writeGood('sidecars/latin1.jpg', await goodJpeg(16, 16, 10), 16, 16)
  await fs.writeFile(at('sidecars', 'latin1.txt'), Buffer.from('un caf\xe9 cr\xe8me sur la table', 'latin1'))
  add({path: at('sidecars', 'latin1.txt'), locator: 'file', expectedReason: 'caption_invalid_utf8', stage: 'caption', note: 'Latin-1 sidecar'})

  await writeGood('sidecars/huge.jpg', await goodJpeg(16, 16, 11), 16, 16)
  await fs.writeFile(at('sidecars', 'huge.txt'), 'a very long caption '.repeat(4000)) // 80,000 bytes > 64 KiB
  add({path: at('sidecars', 'huge.txt'), locator: 'file', expectedReason: 'caption_too_large', stage: 'caption', note: '80,000-byte sidecar'})

  await fs.writeFile(at('sidecars', 'orphan.txt'), 'a caption whose image was never copied')
  add({path: at('sidecars', 'orphan.txt'), expectedReason: 'caption_without_image', stage: 'caption', note: 'sidecar without an image'})

  await writeGood('sidecars/fine.png', await goodPng(16, 16, 12), 16, 16)
  await fs.writeFile(at('sidecars', 'fine.txt'), 'a grey noise square\nsecond line kept\n')
  goodCaptions.push({sourceFile: at('sidecars', 'fine.txt'), imagePath: await fs.realpath(at('sidecars', 'fine.png')), text: 'a grey noise square\nsecond line kept\n'})

  await writeGood('csv/a.jpg', await goodJpeg(16, 16, 13), 16, 16)
  const csv = at('csv', 'metadata.csv')
  await fs.writeFile(csv, 'file_name,text\r\na.jpg,"a caption, with a comma"\r\na.jpg,"never closed\r\n')
  goodCaptions.push({sourceFile: csv, imagePath: await fs.realpath(at('csv', 'a.jpg')), text: 'a caption, with a comma'})
  add({path: csv, locator: 'line 3', expectedReason: 'malformed_csv', stage: 'caption', note: 'quoted field never closed'})

  await writeGood('coco/c1.jpg', await goodJpeg(16, 16, 14), 16, 16)
  const coco = at('coco', 'captions.json')
  await fs.writeFile(
    coco,
    JSON.stringify({
      images: [{id: 1, file_name: 'c1.jpg'}],
      annotations: [
        {id: 10, image_id: 1, caption: 'a noise tile'},
        {id: 11, image_id: 99, caption: 'caption for an image that is not listed'},
      ],
    }),
  )
  goodCaptions.push({sourceFile: coco, imagePath: await fs.realpath(at('coco', 'c1.jpg')), text: 'a noise tile'})
  add({path: coco, locator: 'annotation 11', expectedReason: 'malformed_coco', stage: 'caption', note: 'annotation naming an unknown image_id'})

  // Hidden files are skipped by the walk, not rejected.
  await fs.writeFile(at('.DS_Store'), Buffer.from([0, 0, 0, 1, 0x42, 0x75, 0x64, 0x31]))

  // Real paths, so they compare equal to what the walker reports.
  const realInput = await fs.realpath(input)
  const fix = (p: string): string => path.join(realInput, path.relative(input, p))
  const corpus = cases.map((c) => ({...c, path: fix(c.path)})) as HostileCorpus
  corpus.input = realInput
  corpus.good = good.map((g) => ({...g, path: fix(g.path)}))
  corpus.goodCaptions = goodCaptions.map((g) => ({...g, sourceFile: fix(g.sourceFile), imagePath: fix(g.imagePath)}))
  corpus.skipped = skipped
  return corpus
}

/** Undo chmod 000 so the temporary folder can be removed. */
export async function releaseHostileCorpus(dir: string): Promise<void> {
  for (const p of [path.join(dir, 'input', 'unreadable.jpg'), path.join(dir, 'input', 'locked')]) {
    await fs.chmod(p, 0o700).catch(() => undefined)
  }
}
