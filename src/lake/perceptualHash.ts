/**
 * 64-bit perceptual hashes of a greyscale image, computed in plain TypeScript from 8-bit
 * luma pixels (so a hash depends only on the pixels, not on the libvips version's
 * resampling kernels), and their Hamming distance.
 *
 * pHash (the one gold uses for near-duplicates):
 *   1. area-average (box filter with fractional coverage) the luma to 32×32, ignoring
 *      aspect ratio;
 *   2. 2-D DCT-II of the 32×32 block (only the 8×8 lowest frequencies are computed);
 *   3. take the top-left 8×8 coefficients; the median of the 63 AC ones (DC excluded,
 *      it only encodes mean brightness) is the threshold;
 *   4. bit = coefficient > median, row-major, first coefficient in the most significant
 *      bit. The DC bit is almost always 1: 63 bits carry information.
 *
 * dHash: the same 32×32 reduction, area-averaged again to 9×8; bit = right cell brighter
 * than left (8 per row), row-major, most significant first. Kept in silver as a second
 * opinion.
 *
 * Why pHash for near-duplicates: both survive resizing and JPEG re-encoding, but dHash
 * depends on the sign of small differences between neighbouring cells, which flip in
 * flat or low-contrast regions (skies, walls, studio backgrounds) when a copy is
 * re-encoded; pHash thresholds on the low-frequency DCT spectrum, whose dominant terms
 * are far from the median. Measured in test/lake/perceptualHash.test.ts on 16 generated
 * photo-like images (each through normalizeImage like silver, against the same image
 * downscaled 50%, re-encoded as JPEG q50, downscaled 33% + q50, and as PNG): the largest
 * distance between an image and its copies was 2 bits for pHash, 6 for dHash; the
 * smallest distance between two different images was 22 for pHash (mean 31), 14 for
 * dHash: pHash has the wider margin. `DEFAULT_NEAR_DUPLICATE_DISTANCE` = 8 sits between the two, leaving room
 * for heavier edits than the test makes (mild crops, watermarks) while staying far from
 * the ~32 bits expected between unrelated images (P(≤ 8 | random) ≈ 2·10⁻⁶).
 */

import {MlcapError, invalidParameter} from './errors.js'

/** Which hash gold uses to group near-duplicates. */
export const NEAR_DUPLICATE_HASH = 'phash' as const

/** Default Hamming distance (bits of 64) at or under which two pHashes are near-duplicates. */
export const DEFAULT_NEAR_DUPLICATE_DISTANCE = 8

/** Bump if the algorithm or its input (luma formula, normalization) changes: hashes are not comparable across versions. */
export const PERCEPTUAL_HASH_VERSION = 1

const PHASH_SIZE = 32
const PHASH_LOW = 8

/**
 * Area-average `src` (width×height, one byte per pixel) to `outW`×`outH`, as floats.
 * Each output pixel is the mean of the source area it covers (partial pixels weighted
 * by coverage). Works for any sizes, including enlargement (then it picks/blends the
 * nearest source pixels).
 */
export function areaResize(src: Uint8Array, width: number, height: number, outW: number, outH: number): Float64Array {
  checkPixels(src, width, height)
  return areaResizeFloat(src, width, height, outW, outH)
}

function areaResizeFloat(src: ArrayLike<number>, width: number, height: number, outW: number, outH: number): Float64Array {
  const xs = coverage(width, outW)
  const ys = coverage(height, outH)
  // Horizontal pass, row by row (sequential reads): height × outW.
  const tmp = new Float64Array(height * outW)
  for (let y = 0; y < height; y++) {
    const row = y * width
    const orow = y * outW
    for (let ox = 0; ox < outW; ox++) {
      const {first, weights} = xs[ox]!
      let sum = 0
      for (let k = 0; k < weights.length; k++) sum += src[row + first + k]! * weights[k]!
      tmp[orow + ox] = sum
    }
  }
  // Vertical pass: outH × outW.
  const out = new Float64Array(outH * outW)
  for (let oy = 0; oy < outH; oy++) {
    const {first, weights} = ys[oy]!
    const orow = oy * outW
    for (let k = 0; k < weights.length; k++) {
      const w = weights[k]!
      const row = (first + k) * outW
      for (let ox = 0; ox < outW; ox++) out[orow + ox]! += tmp[row + ox]! * w
    }
  }
  return out
}

/** For each of `outN` cells over `inN` pixels: first pixel covered and each covered pixel's share (summing to 1). */
function coverage(inN: number, outN: number): Array<{first: number; weights: Float64Array}> {
  const scale = inN / outN
  const cells: Array<{first: number; weights: Float64Array}> = []
  for (let o = 0; o < outN; o++) {
    const a = o * scale
    const b = a + scale
    const first = Math.floor(a)
    const last = Math.min(inN - 1, Math.ceil(b) - 1)
    const weights = new Float64Array(Math.max(1, last - first + 1))
    for (let i = first; i <= last; i++) weights[i - first] = Math.max(0, Math.min(i + 1, b) - Math.max(i, a)) / scale
    cells.push({first, weights})
  }
  return cells
}

// cos((2x+1)uπ/64) for u < 8, x < 32.
const COS = (() => {
  const table = new Float64Array(PHASH_LOW * PHASH_SIZE)
  for (let u = 0; u < PHASH_LOW; u++)
    for (let x = 0; x < PHASH_SIZE; x++) table[u * PHASH_SIZE + x] = Math.cos(((2 * x + 1) * u * Math.PI) / (2 * PHASH_SIZE))
  return table
})()

function checkPixels(grey: Uint8Array, width: number, height: number): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
    throw new MlcapError('INVALID_PIXELS', `phash: image size ${width}×${height} is not a positive integer size; pass the width and height of the greyscale buffer.`)
  if (grey.length !== width * height)
    throw new MlcapError(
      'INVALID_PIXELS',
      `phash: greyscale buffer has ${grey.length} bytes, expected ${width}×${height} = ${width * height} (one byte per pixel); convert the image to 8-bit single-channel luma first.`,
    )
}

/** 64-bit pHash of an 8-bit greyscale image (see the module comment). */
export function phash(grey: Uint8Array, width: number, height: number): bigint {
  checkPixels(grey, width, height)
  return phashOf32(areaResizeFloat(grey, width, height, PHASH_SIZE, PHASH_SIZE))
}

function phashOf32(px: Float64Array): bigint {
  // Rows: for each of the 32 rows, the 8 lowest horizontal frequencies.
  const rows = new Float64Array(PHASH_SIZE * PHASH_LOW)
  for (let y = 0; y < PHASH_SIZE; y++)
    for (let u = 0; u < PHASH_LOW; u++) {
      let sum = 0
      for (let x = 0; x < PHASH_SIZE; x++) sum += px[y * PHASH_SIZE + x]! * COS[u * PHASH_SIZE + x]!
      rows[y * PHASH_LOW + u] = sum
    }
  // Columns: the 8 lowest vertical frequencies of each of those.
  const coef = new Float64Array(PHASH_LOW * PHASH_LOW)
  for (let v = 0; v < PHASH_LOW; v++)
    for (let u = 0; u < PHASH_LOW; u++) {
      let sum = 0
      for (let y = 0; y < PHASH_SIZE; y++) sum += rows[y * PHASH_LOW + u]! * COS[v * PHASH_SIZE + y]!
      // Rounded to 1e-6 so that float noise (±1e-12 where a coefficient is really 0, as in
      // flat or symmetric images) cannot decide a bit.
      coef[v * PHASH_LOW + u] = Math.round(sum * 1e6) / 1e6
    }
  const ac = Array.from(coef.subarray(1)).sort((a, b) => a - b)
  const median = ac[(ac.length - 1) / 2]! // 63 values: the middle one
  let hash = 0n
  for (let i = 0; i < 64; i++) hash = (hash << 1n) | (coef[i]! > median ? 1n : 0n)
  return hash
}

/** 64-bit dHash of an 8-bit greyscale image (see the module comment). */
export function dhash(grey: Uint8Array, width: number, height: number): bigint {
  checkPixels(grey, width, height)
  return dhashOf32(areaResizeFloat(grey, width, height, PHASH_SIZE, PHASH_SIZE))
}

/** Both hashes, sharing the 32×32 reduction (what silver calls). */
export function perceptualHashes(grey: Uint8Array, width: number, height: number): {phash: bigint; dhash: bigint} {
  checkPixels(grey, width, height)
  const px = areaResizeFloat(grey, width, height, PHASH_SIZE, PHASH_SIZE)
  return {phash: phashOf32(px), dhash: dhashOf32(px)}
}

function dhashOf32(px32: Float64Array): bigint {
  const px = areaResizeFloat(px32, PHASH_SIZE, PHASH_SIZE, 9, 8)
  let hash = 0n
  for (let y = 0; y < 8; y++)
    for (let x = 0; x < 8; x++) hash = (hash << 1n) | (px[y * 9 + x + 1]! - px[y * 9 + x]! > 1e-9 ? 1n : 0n) // ε: float noise is not a difference
  return hash
}

const MASK64 = (1n << 64n) - 1n

/** Set bits of a 32-bit integer. */
export function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333)
  x = (x + (x >>> 4)) & 0x0f0f0f0f
  return Math.imul(x, 0x01010101) >>> 24
}

/** Number of differing bits between two 64-bit hashes (0..64). */
export function hammingDistance(a: bigint, b: bigint): number {
  const x = (a ^ b) & MASK64
  return popcount32(Number(x & 0xffffffffn)) + popcount32(Number(x >> 32n))
}

/** 16 lowercase hex characters, zero-padded: the form stored in Parquet and shown to users. */
export function hashToHex(hash: bigint): string {
  if (typeof hash !== 'bigint' || hash < 0n || hash > MASK64)
    throw invalidParameter('hash', 'unsigned 64-bit bigint (0..2^64-1)', hash)
  return hash.toString(16).padStart(16, '0')
}

/** Inverse of `hashToHex`; accepts exactly 16 hex characters (either case). */
export function hexToHash(hex: string): bigint {
  if (typeof hex !== 'string' || !/^[0-9a-fA-F]{16}$/.test(hex))
    throw invalidParameter('hash', '16 hex characters such as "8f3a00c1d2e4b697"', hex)
  return BigInt('0x' + hex)
}
