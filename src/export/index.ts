/** The export subsystem's public surface (the CLI wiring imports from here). */
export {DEFAULT_MAX_SHARD_BYTES, DEFAULT_SHARD_SIZE, EXPORT_FORMATS, writeExport} from './exporter.js'
export type {ExportFormat, ExportOptions, ExportSummary} from './exporter.js'
export {MANIFEST_FILE, readManifest, verifyExport} from './manifest.js'
export type {ExportCounts, ExportManifest, ManifestFile, VerifyIssue, VerifyProblem, VerifyResult} from './manifest.js'
export {CAPTION_MODES, IMAGE_EXTS, SPLITS, validateSample} from './sample.js'
export type {CaptionMode, ExportCaption, ExportSample, ImageExt, Split} from './sample.js'
export {TarWriter} from './tarWriter.js'
