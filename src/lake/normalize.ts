/**
 * Image normalization for silver: one decode per image, then everything silver stores
 * about the pixels (normalized derivative, perceptual hashes, quality measures).
 *
 * Pipeline:
 *  1. Header only (`metadata()`, no pixel decode): format, size, orientation; or, for
 *     single-page JPEG/PNG/WebP, what bronze recorded from the same header at ingest
 *     (`KnownHeader`). SVG/XML is refused before libvips sees it. Rejected here, without
 *     decoding: more pixels than `maxPixels` (`too_many_pixels`), shorter side < `minSide`
 *     (`too_small`), longer/shorter side > `maxAspectRatio` (`extreme_aspect_ratio`). Sizes
 *     are as displayed (after EXIF orientation) and of the first page/frame.
 *  2. One decode (`failOn: 'error'`: a truncated or corrupt file fails → `undecodable`;
 *     mere warnings such as extra bytes after the end marker are tolerated) of the first
 *     page/frame only (`pages: 1, page: 0`), with libvips' shrink-on-load for JPEG/WebP:
 *     EXIF orientation applied (`autoOrient`), resized so the longer side ≤ `maxSide`
 *     (Lanczos 3, `fit: inside`, never enlarged), alpha flattened onto `background`, converted
 *     to 8-bit sRGB (embedded ICC profiles honoured: CMYK, Display P3, 16-bit and greyscale
 *     images all end up 8-bit 3-channel sRGB), out as raw RGB pixels.
 *  3. From those raw pixels, at the same time: (a) libvips encodes the output (`format`,
 *     `quality`) from raw input, so nothing of the original's metadata can be copied — no
 *     EXIF, GPS, XMP, IPTC, ICC (untagged output means sRGB); (b) on the JS thread, 8-bit
 *     luma (BT.601, `(77R + 150G + 29B + 128) >> 8`) of the normalized image, and from it
 *     pHash, dHash, brightness, contrast and sharpness.
 *
 * Quality measures, all on the luma of the normalized image (longer side = min(original,
 * maxSide), i.e. 512 px by default):
 *  - brightness: mean luma, 0..255;
 *  - contrast: standard deviation of luma, 0..~128;
 *  - sharpness: variance of the 4-neighbour Laplacian (`4p − up − down − left − right`)
 *    over the interior pixels. Depends on the size it is measured at; compare images
 *    normalized with the same `maxSide`. Blurry ≲ 20, typical photos 100–2000.
 *
 * Throughput, measured on this 2-core box while other jobs were running (load average
 * 6–8, so ±30%), 24 generated 3.0–3.8 MP JPEGs q90 (2000×1500 and 2400×1600, ~450 KB),
 * reading files and writing outputs, 96 images per run, 3 runs:
 *  - normalizeImage, 2 in flight: 43–49 img/s; 4 in flight: 44–59 img/s;
 *  - `vipsthumbnail -s 512 -o %s.jpg[Q=90,strip]` (Debian libvips 8.14), one process:
 *    25–30 img/s; two processes: 37–48 img/s → normalizeImage ≈ 1.0–1.6× vipsthumbnail;
 *  - against the same libvips 8.18 in sharp doing only decode+resize+encode
 *    (`resize(512, 512, {fit: 'inside'}).jpeg({quality: 90})`, in memory), normalizeImage
 *    is 0.6–1.0× (median ≈ 0.8×). The extra cost per image, measured single-threaded:
 *    header read 0.2 ms, raw round trip + separate encode ≈ 1 ms, JS luma 0.7 ms,
 *    Laplacian/stats 0.8 ms, pHash+dHash (shared 32×32 reduction) 0.6 ms, on top of
 *    ≈ 9–10 ms decode+resize (JPEG shrink-on-load) and 1.8 ms encode.
 * Run 2 images in flight per core (4 here); more only adds memory.
 */
import sharp, {type Metadata, type OutputInfo} from 'sharp'
import {invalidParameter} from './errors.js'
import {HEIC_ADVICE, isHeic} from './heic.js'
import {perceptualHashes} from './perceptualHash.js'

export type NormalizeFormat = 'jpeg' | 'webp' | 'png'

export type NormalizeOptions = {
  /** Longer side of the output, pixels (default 512). Smaller images are not enlarged. */
  maxSide: number
  /** Output format (default jpeg). */
  format: NormalizeFormat
  /** Encoder quality 1..100 for jpeg/webp (default 90; ignored for png). */
  quality: number
  /** Colour that transparent pixels are flattened onto (default '#ffffff'). */
  background: string
  /** Shorter side below which an image is rejected `too_small` (default 32). */
  minSide: number
  /** Longer/shorter side above which an image is rejected `extreme_aspect_ratio` (default 6). */
  maxAspectRatio: number
  /** Pixels (width × height of the first page) above which an image is rejected `too_many_pixels` (default 100 MP). */
  maxPixels: number
}

export const DEFAULT_NORMALIZE_OPTIONS: Readonly<NormalizeOptions> = Object.freeze({
  maxSide: 512,
  format: 'jpeg',
  quality: 90,
  background: '#ffffff',
  minSide: 32,
  maxAspectRatio: 6,
  maxPixels: 100_000_000,
})

export type OriginalImageInfo = {
  /** Displayed size (after EXIF orientation) of the first page/frame. */
  width: number
  height: number
  /** libvips loader name: jpeg, png, webp, gif, tiff, heif, ... */
  format: string
  /** EXIF orientation 1..8 (1 when absent). */
  orientation: number
  /** Pages/frames in the file (1 for single images); only the first is used. */
  pages: number
  /** libvips interpretation of the stored pixels: srgb, cmyk, b-w, rgb16, grey16, ... */
  space: string
  hasAlpha: boolean
  /** An ICC profile was embedded (and honoured); absent when the header came from bronze (KnownHeader). */
  hasProfile?: boolean
}

export type NormalizeRejectReason = 'undecodable' | 'unsupported_codec' | 'too_small' | 'extreme_aspect_ratio' | 'too_many_pixels'

export type NormalizeResult =
  | {
      status: 'ok'
      output: Buffer
      original: OriginalImageInfo
      normalized: {width: number; height: number; format: NormalizeFormat; bytes: number}
      /** 64-bit pHash of the normalized luma (see perceptualHash.ts). */
      phash: bigint
      /** 64-bit dHash of the normalized luma. */
      dhash: bigint
      /** Variance of the Laplacian of the normalized luma. */
      sharpness: number
      /** Mean luma 0..255. */
      brightness: number
      /** Standard deviation of luma. */
      contrast: number
      /** width / height as displayed. */
      aspectRatio: number
    }
  | {status: 'rejected'; reason: NormalizeRejectReason; message: string; original?: OriginalImageInfo}

function validate(opts: NormalizeOptions): void {
  const posInt = (name: keyof NormalizeOptions, min = 1) => {
    const v = opts[name]
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw invalidParameter(name, `integer ≥ ${min}`, v)
  }
  posInt('maxSide')
  posInt('minSide')
  posInt('maxPixels')
  if (!['jpeg', 'webp', 'png'].includes(opts.format)) throw invalidParameter('format', 'one of jpeg, webp, png', opts.format)
  if (!Number.isInteger(opts.quality) || opts.quality < 1 || opts.quality > 100) throw invalidParameter('quality', 'integer between 1 and 100', opts.quality)
  if (typeof opts.maxAspectRatio !== 'number' || !(opts.maxAspectRatio >= 1)) throw invalidParameter('maxAspectRatio', 'number ≥ 1', opts.maxAspectRatio)
  if (typeof opts.background !== 'string' || opts.background === '') throw invalidParameter('background', "CSS colour such as '#ffffff'", opts.background)
}

type Rejected = Extract<NormalizeResult, {status: 'rejected'}>

function rejected(reason: NormalizeRejectReason, message: string, original?: OriginalImageInfo): Rejected {
  return original === undefined ? {status: 'rejected', reason, message} : {status: 'rejected', reason, message, original}
}

/** True when the bytes start (after a BOM and whitespace) with `<`: SVG, XML, HTML. */
function looksLikeMarkup(input: Buffer): boolean {
  let i = input[0] === 0xef && input[1] === 0xbb && input[2] === 0xbf ? 3 : 0
  while (i < input.length && i < 256 && (input[i] === 0x20 || input[i] === 0x09 || input[i] === 0x0a || input[i] === 0x0d)) i++
  return input[i] === 0x3c
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message.split('\n')[0]!.trim() : String(error)
}

/**
 * What bronze recorded about an image's header at ingest (bronze.images: format, stored size,
 * orientation, pages, colour space, alpha). The bytes are content-addressed, so the header
 * cannot have changed since.
 */
export type KnownHeader = {
  format: string
  /** Stored size, before EXIF orientation. */
  width: number
  height: number
  /** EXIF orientation 1..8; null or absent when the file has none. */
  orientation?: number | null
  pages: number
  space: string
  hasAlpha: boolean
}

type Header = {status: 'ok'; original: OriginalImageInfo; heic: boolean} | Rejected

/** Formats whose bronze header says all silver needs (one page; bronze's format name is libvips' loader name). */
const KNOWN_HEADER_FORMATS = new Set(['jpeg', 'png', 'webp'])

/**
 * The original's header from what bronze recorded, sparing a second header read (0.2 ms of
 * CPU per photo on a quiet machine, up to 0.7 ms under load; 1–4% of silver). Only for
 * single-page JPEG, PNG and WebP: for animations, multi-page files and HEIF/AVIF, bronze's
 * fields differ from what silver records (whole-file height, `avif` for libvips' `heif`), so
 * those are read again. Undefined when not usable.
 */
function originalFromKnown(known: KnownHeader): Header | undefined {
  if (known.pages !== 1 || !KNOWN_HEADER_FORMATS.has(known.format)) return undefined
  if (!(Number.isInteger(known.width) && known.width > 0 && Number.isInteger(known.height) && known.height > 0)) return undefined
  const orientation = known.orientation ?? 1
  const swapped = orientation >= 5 && orientation <= 8
  return {
    status: 'ok',
    heic: false,
    original: {
      width: swapped ? known.height : known.width,
      height: swapped ? known.width : known.height,
      format: known.format,
      orientation,
      pages: 1,
      space: known.space,
      hasAlpha: known.hasAlpha,
    },
  }
}

/** Reads the header (no pixel decode); refuses SVG/PDF. */
async function readHeader(input: Buffer): Promise<Header> {
  let meta: Metadata
  try {
    meta = await sharp(input, {limitInputPixels: false, pages: 1, page: 0}).metadata()
  } catch (error) {
    return rejected('undecodable', `silver: image header could not be read (${describe(error)}); expected a JPEG, PNG, WebP, GIF, TIFF, AVIF or HEIF image. Check the file at its source; it is probably not an image or badly damaged.`)
  }
  if (meta.format === 'svg' || meta.format === 'pdf') {
    return rejected('undecodable', `silver: image is ${meta.format.toUpperCase()}; vector and document formats are refused. Convert it to PNG or JPEG and ingest that.`)
  }
  return {
    status: 'ok',
    heic: isHeic(meta),
    original: {
      width: meta.autoOrient?.width ?? meta.width,
      height: meta.autoOrient?.height ?? (meta.pageHeight ?? meta.height),
      format: meta.format,
      orientation: meta.orientation ?? 1,
      pages: meta.pages ?? 1,
      space: meta.space,
      hasAlpha: meta.hasAlpha,
      hasProfile: meta.hasProfile,
    },
  }
}

/**
 * Normalize one image (see the module comment). Bad images come back `rejected` with a
 * reason and a message; only invalid options throw. `known`: the header bronze recorded for
 * these bytes, used instead of reading it again where it says all silver needs.
 */
export async function normalizeImage(input: Buffer, options: Partial<NormalizeOptions> = {}, known?: KnownHeader): Promise<NormalizeResult> {
  const opts: NormalizeOptions = {...DEFAULT_NORMALIZE_OPTIONS, ...options}
  validate(opts)
  if (!Buffer.isBuffer(input)) throw invalidParameter('input', 'Buffer with the bytes of an image', input)

  if (input.length === 0) {
    return rejected('undecodable', 'silver: image is 0 bytes; expected the bytes of a JPEG, PNG, WebP, GIF, TIFF, AVIF or HEIF image. Re-ingest the file from its source.')
  }
  if (looksLikeMarkup(input)) {
    return rejected('undecodable', 'silver: image is SVG/XML/HTML text; vector and markup files are refused (rendering them is a security risk). Convert it to PNG or JPEG and ingest that.')
  }

  // 1. Header only: the one bronze recorded at ingest when it is enough, else read now.
  const header = (known && originalFromKnown(known)) ?? (await readHeader(input))
  if (header.status === 'rejected') return header
  const {original} = header
  const {width, height} = original
  if (!(width > 0 && height > 0)) {
    return rejected('undecodable', `silver: image header gives size ${width}×${height}; expected a positive width and height. Check the file at its source.`, original)
  }
  const pixels = width * height
  if (pixels > opts.maxPixels) {
    return rejected(
      'too_many_pixels',
      `silver: image is ${width}×${height} = ${(pixels / 1e6).toFixed(1)} MP, more than maxPixels ${(opts.maxPixels / 1e6).toFixed(1)} MP (possible decompression bomb); it was not decoded. Raise maxPixels if the image is genuine.`,
      original,
    )
  }
  const shorter = Math.min(width, height)
  const longer = Math.max(width, height)
  if (shorter < opts.minSide) {
    return rejected('too_small', `silver: image is ${width}×${height}; its shorter side ${shorter} px is below minSide ${opts.minSide} px. Lower minSide to keep such images.`, original)
  }
  const aspect = longer / shorter
  if (aspect > opts.maxAspectRatio) {
    return rejected(
      'extreme_aspect_ratio',
      `silver: image is ${width}×${height}, aspect ratio ${aspect.toFixed(2)}:1, above maxAspectRatio ${opts.maxAspectRatio}:1 (banners, panoramas and strips caption poorly). Raise maxAspectRatio to keep such images.`,
      original,
    )
  }

  // 2. The one decode: oriented, first page, resized, flattened, 8-bit sRGB, raw pixels.
  let data: Buffer
  let info: OutputInfo
  try {
    ;({data, info} = await sharp(input, {failOn: 'error', pages: 1, page: 0, limitInputPixels: opts.maxPixels, sequentialRead: true})
      .autoOrient()
      .resize({width: opts.maxSide, height: opts.maxSide, fit: 'inside', withoutEnlargement: true})
      .flatten({background: opts.background})
      .toColourspace('srgb')
      .raw()
      .toBuffer({resolveWithObject: true}))
  } catch (error) {
    if (header.heic) {
      // Not damage (see heic.ts): say what the file is and how to convert it. The original stays in bronze.
      return rejected('unsupported_codec', `silver: image is HEIC (HEIF with HEVC compression, ${width}×${height}); ${HEIC_ADVICE} Then ingest the JPEGs.`, original)
    }
    return rejected('undecodable', `silver: image (${original.format}, ${width}×${height}) could not be decoded: ${describe(error)}. The file is truncated or corrupt; re-ingest it from its source.`, original)
  }
  if (info.channels !== 3) {
    return rejected('undecodable', `silver: image (${original.format}, ${original.space}) decoded to ${info.channels} channels; expected 3 (sRGB). Convert it to an RGB JPEG or PNG and ingest that.`, original)
  }

  // 3a. Encode from raw pixels (libvips thread pool) while 3b runs on this thread.
  const raw = {width: info.width, height: info.height, channels: 3 as const}
  let encoder = sharp(data, {raw})
  if (opts.format === 'jpeg') encoder = encoder.jpeg({quality: opts.quality, chromaSubsampling: '4:2:0'})
  else if (opts.format === 'webp') encoder = encoder.webp({quality: opts.quality})
  else encoder = encoder.png({compressionLevel: 6})
  const encoding = encoder.toBuffer()

  // 3b. Luma and everything measured on it.
  let stats: PixelStats
  try {
    stats = measureRgb(data, info.width, info.height)
  } catch (error) {
    await encoding.catch(() => undefined) // settle the encode before failing; its error would only repeat ours
    throw error
  }
  let output: Buffer
  try {
    output = await encoding
  } catch (error) {
    return rejected('undecodable', `silver: normalized image could not be encoded as ${opts.format}: ${describe(error)}. Report this as a bug with the input file.`, original)
  }

  return {
    status: 'ok',
    output,
    original,
    normalized: {width: info.width, height: info.height, format: opts.format, bytes: output.length},
    ...stats,
    aspectRatio: width / height,
  }
}

type PixelStats = {phash: bigint; dhash: bigint; sharpness: number; brightness: number; contrast: number}

/**
 * Brightness, contrast and sharpness (see the module comment) and both hashes of packed RGB
 * pixels, on their 8-bit BT.601 luma `(77R + 150G + 29B + 128) >> 8`. The luma and its sums
 * are one pass over the pixels, and the Laplacian slides along each row (3 reads per pixel,
 * not 5): this runs on the JS thread for every image silver decodes.
 */
export function measureRgb(rgb: Uint8Array, width: number, height: number): PixelStats {
  const n = width * height
  if (rgb.length !== n * 3) throw invalidParameter('rgb', `${n * 3} bytes (${width}×${height}×3)`, `${rgb.length} bytes`)
  const luma = new Uint8Array(n)
  let sum = 0
  let sumSq = 0
  for (let i = 0, j = 0; i < n; i++, j += 3) {
    const v = (77 * rgb[j]! + 150 * rgb[j + 1]! + 29 * rgb[j + 2]! + 128) >> 8
    luma[i] = v
    sum += v
    sumSq += v * v
  }
  const brightness = sum / n
  const contrast = Math.sqrt(Math.max(0, sumSq / n - brightness * brightness))
  return {...perceptualHashes(luma, width, height), sharpness: laplacianVariance(luma, width, height), brightness, contrast}
}

/** Variance of the 4-neighbour Laplacian `4p − up − down − left − right` over the interior pixels (0 when there are none). */
function laplacianVariance(luma: Uint8Array, width: number, height: number): number {
  // The sums fit exactly in doubles (|lap| ≤ 1020, n ≤ 2^31).
  let lapSum = 0
  let lapSq = 0
  for (let y = 1; y < height - 1; y++) {
    let i = y * width + 1
    const end = i + width - 2
    let left = luma[i - 1]!
    let centre = luma[i]!
    for (; i < end; i++) {
      const right = luma[i + 1]!
      const lap = (centre << 2) - left - right - luma[i - width]! - luma[i + width]!
      lapSum += lap
      lapSq += lap * lap
      left = centre
      centre = right
    }
  }
  const count = Math.max(0, width - 2) * Math.max(0, height - 2)
  if (count === 0) return 0
  const lapMean = lapSum / count
  return Math.max(0, lapSq / count - lapMean * lapMean)
}
