import {Flags} from '@oclif/core'

import {INGEST_DEFAULTS, type IngestOptions} from '../lake/ingest.js'

/** The flags that decide what an ingested file may hold: the same on `mlcap ingest` and `mlcap watch`. */
export function ingestContentFlags() {
  return {
    'keep-gps': Flags.boolean({description: 'Store GPS coordinates from EXIF (default: only whether they exist).'}),
    'max-pixels': Flags.integer({description: 'Refuse images with more pixels than this.', default: INGEST_DEFAULTS.maxPixels, min: 1}),
    'max-caption-bytes': Flags.integer({description: 'Refuse captions larger than this.', default: INGEST_DEFAULTS.maxCaptionBytes, min: 1}),
  }
}

/** ingestContentFlags → the ingest options they set. */
export function ingestContentOptions(flags: {'keep-gps'?: boolean; 'max-pixels'?: number; 'max-caption-bytes'?: number}): Pick<IngestOptions, 'keepGps' | 'maxPixels' | 'maxCaptionBytes'> {
  return {keepGps: flags['keep-gps'], maxPixels: flags['max-pixels'], maxCaptionBytes: flags['max-caption-bytes']}
}
