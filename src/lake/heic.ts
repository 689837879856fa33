/**
 * HEIC (HEIF with HEVC compression: iPhone photos). The libvips that sharp ships reads the
 * container but has no HEVC decoder (patents), so such files fail to decode. That is not
 * damage: whoever reports it names the file type and says how to convert it.
 */
import type {Metadata} from 'sharp'

export function isHeic(meta: Pick<Metadata, 'format' | 'compression'>): boolean {
  return meta.format === 'heif' && meta.compression === 'hevc'
}

/** Why a HEIC cannot be read here and what to do, for the end of an error message. */
export const HEIC_ADVICE =
  'this build of libvips (from sharp) has no HEVC decoder, so its pixels cannot be read. Convert HEIC photos to JPEG: `heif-convert photo.heic photo.jpg` (Debian/Ubuntu package libheif-examples), or on macOS `sips -s format jpeg photo.heic --out photo.jpg`; iPhones save JPEG with Settings → Camera → Formats → Most Compatible.'
