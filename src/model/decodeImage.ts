/**
 * Encoded image bytes → upright 8-bit RGB pixels, the form Transformers.js' RawImage takes.
 */
import sharp from 'sharp'
import {HEIC_ADVICE, isHeic} from '../lake/heic.js'
import {MODEL_ERROR_CODES, messageOf} from './errors.js'

export interface RgbImage {
  data: Uint8Array
  width: number
  height: number
}

export class ImageDecodeError extends Error {
  readonly code = MODEL_ERROR_CODES.imageDecodeFailed
}

/** SVG/XML text starts with `<` (after an optional BOM and whitespace). */
function looksLikeMarkup(buf: Uint8Array): boolean {
  let i = 0
  if (buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) i = 3
  while (i < buf.length && i < 256 && (buf[i] === 0x20 || buf[i] === 0x09 || buf[i] === 0x0a || buf[i] === 0x0d)) i++
  return buf[i] === 0x3c
}

/**
 * Decode with sharp: EXIF orientation applied first (`rotate()`), alpha dropped, converted
 * to sRGB, 8 bits per channel. SVG is refused (vector input is a risk surface and never a
 * photo to caption). Throws ImageDecodeError with a message naming the problem.
 */
export async function decodeImage(input: Uint8Array): Promise<RgbImage> {
  if (input.length === 0) throw new ImageDecodeError('model: image is empty (0 bytes); expected JPEG, PNG, WebP, GIF, TIFF or AVIF bytes')
  if (looksLikeMarkup(input)) {
    throw new ImageDecodeError('model: image looks like SVG/XML markup; expected a raster image (JPEG, PNG, WebP, GIF, TIFF, AVIF)')
  }
  try {
    const {data, info} = await sharp(input)
      .rotate()
      .removeAlpha()
      .toColourspace('srgb')
      .raw({depth: 'uchar'})
      .toBuffer({resolveWithObject: true})
    if (info.channels !== 3) {
      throw new Error(`decoded to ${info.channels} channels, expected 3`)
    }
    return {data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height}
  } catch (error) {
    const meta = await sharp(input).metadata().catch(() => null)
    if (meta && isHeic(meta)) {
      throw new ImageDecodeError(`model: image is HEIC (HEIF with HEVC compression, ${meta.width}×${meta.height}); ${HEIC_ADVICE}`, {cause: error})
    }
    throw new ImageDecodeError(`model: image of ${input.length} bytes could not be decoded (${messageOf(error)}); expected a valid raster image`, {
      cause: error,
    })
  }
}
