/**
 * The tables of the lake: their columns are a public interface users write SQL against
 * (documented in docs/lake.md — keep both in step, and only ever add columns).
 *
 * Every table has a `key`: a SQL expression over its columns that identifies a row.
 * A commit adds only rows whose key the table does not already hold, which is what makes
 * re-running any command add nothing (exactly once, by key, never by timestamp).
 * `commit_id` is filled in by the commit itself and is not part of the staged rows.
 */
export interface ColumnDef {
  readonly name: string
  /** DuckDB type, written to Parquet as its standard counterpart. */
  readonly type: string
  readonly doc: string
  /** Holds the SHA-256 of a file in the object store (gc keeps those objects). */
  readonly objectRef?: boolean
}

export interface TableDef {
  readonly id: string
  readonly doc: string
  readonly key: string
  /** Row order inside each data file, so files are deterministic and prune well. */
  readonly sortBy: string
  readonly columns: readonly ColumnDef[]
}

const provenance: readonly ColumnDef[] = [
  {name: 'run_id', type: 'VARCHAR', doc: 'the run that produced the row (lake.runs.run_id)'},
]

const commitColumn: ColumnDef = {name: 'commit_id', type: 'BIGINT', doc: 'the commit that made the row visible (lake.commits.commit_id)'}

function table(def: Omit<TableDef, 'columns'> & {columns: readonly ColumnDef[]}): TableDef {
  return Object.freeze({...def, columns: Object.freeze([...def.columns, ...provenance, commitColumn])})
}

export const BRONZE_IMAGES = table({
  id: 'bronze.images',
  doc: 'One row per distinct image (by content), with what its headers say. The bytes are in objects/<sha256[0:2]>/<sha256>.',
  key: 'sha256',
  sortBy: 'sha256',
  columns: [
    {name: 'sha256', type: 'VARCHAR', doc: 'SHA-256 of the file bytes, lowercase hex', objectRef: true},
    {name: 'bytes', type: 'BIGINT', doc: 'file size in bytes'},
    {name: 'format', type: 'VARCHAR', doc: 'jpeg, png, webp, gif, tiff, avif or heif (decided from content, not the file name)'},
    {name: 'width', type: 'INTEGER', doc: 'stored width in pixels (before EXIF orientation)'},
    {name: 'height', type: 'INTEGER', doc: 'stored height in pixels (before EXIF orientation)'},
    {name: 'orientation', type: 'INTEGER', doc: 'EXIF orientation 1–8, null when absent'},
    {name: 'color_space', type: 'VARCHAR', doc: 'colour space from the header (srgb, cmyk, b-w, rgb16, …)'},
    {name: 'has_alpha', type: 'BOOLEAN', doc: 'the image has an alpha channel'},
    {name: 'pages', type: 'INTEGER', doc: 'frames or pages (animated GIF/WebP, multi-page TIFF); 1 otherwise'},
    {name: 'captured_at', type: 'VARCHAR', doc: "EXIF DateTimeOriginal as written ('YYYY-MM-DDTHH:MM:SS', with offset when EXIF has one); no time zone is assumed"},
    {name: 'camera_make', type: 'VARCHAR', doc: 'EXIF Make'},
    {name: 'camera_model', type: 'VARCHAR', doc: 'EXIF Model'},
    {name: 'has_gps', type: 'BOOLEAN', doc: 'the file carries GPS coordinates'},
    {name: 'gps_latitude', type: 'DOUBLE', doc: 'only with `ingest --keep-gps`; null otherwise'},
    {name: 'gps_longitude', type: 'DOUBLE', doc: 'only with `ingest --keep-gps`; null otherwise'},
    {name: 'first_path', type: 'VARCHAR', doc: 'the path the image was first found at (all paths: bronze.sources)'},
    {name: 'ingested_at', type: 'TIMESTAMPTZ', doc: 'when the image was first ingested'},
  ],
})

export const BRONZE_SOURCES = table({
  id: 'bronze.sources',
  doc: 'One row per occurrence of an image file: the same photo in two folders is one image with two sources.',
  key: "sha256 || '|' || path",
  sortBy: 'path',
  columns: [
    {name: 'sha256', type: 'VARCHAR', doc: 'the image (bronze.images.sha256)'},
    {name: 'path', type: 'VARCHAR', doc: 'absolute path of the file when it was ingested'},
    {name: 'root', type: 'VARCHAR', doc: 'the folder (or file) given to ingest/watch that led to it'},
    {name: 'relative_path', type: 'VARCHAR', doc: 'path relative to root'},
    {name: 'bytes', type: 'BIGINT', doc: 'file size'},
    {name: 'modified_at', type: 'TIMESTAMPTZ', doc: 'file modification time'},
    {name: 'source', type: 'VARCHAR', doc: "how it arrived: 'ingest', 'watch', 'api'"},
    {name: 'seen_at', type: 'TIMESTAMPTZ', doc: 'when mlcap read it'},
  ],
})

export const BRONZE_CAPTIONS = table({
  id: 'bronze.captions',
  doc: 'One row per caption found beside an image, with the raw text exactly as found (cleaning is silver’s job).',
  key: 'caption_id',
  sortBy: 'sha256, caption_id',
  columns: [
    {name: 'caption_id', type: 'VARCHAR', doc: 'SHA-256 of (image, source kind, source file, text), hex'},
    {name: 'sha256', type: 'VARCHAR', doc: 'the image it describes (bronze.images.sha256)'},
    {name: 'text', type: 'VARCHAR', doc: 'raw caption text, exactly as found'},
    {name: 'source_kind', type: 'VARCHAR', doc: "'sidecar' (<image>.txt), 'jsonl' / 'csv' (Hugging Face ImageFolder metadata), 'coco' (COCO captions JSON)"},
    {name: 'source_file', type: 'VARCHAR', doc: 'absolute path of the file the caption came from'},
    {name: 'locator', type: 'VARCHAR', doc: "where in that file ('line 12', 'annotation 345')"},
    {name: 'attributes', type: 'JSON', doc: 'extra manifest columns kept as they were (JSON object), null when none'},
    {name: 'ingested_at', type: 'TIMESTAMPTZ', doc: 'when the caption was ingested'},
  ],
})

export const BRONZE_REJECTS = table({
  id: 'bronze.rejects',
  doc: 'Every input a stage refused, with a reason code and a message. Nothing bad disappears silently.',
  key: 'reject_id',
  sortBy: 'stage, path',
  columns: [
    {name: 'reject_id', type: 'VARCHAR', doc: 'SHA-256 of (stage, path, reason, locator, content fingerprint), hex'},
    {name: 'stage', type: 'VARCHAR', doc: "the stage that refused it: 'ingest', 'silver', 'caption', …"},
    {name: 'path', type: 'VARCHAR', doc: 'the file concerned (absolute path), or null'},
    {name: 'root', type: 'VARCHAR', doc: 'the folder given to the command'},
    {name: 'reason', type: 'VARCHAR', doc: 'reason code (see docs/lake.md#reject-reasons)'},
    {name: 'message', type: 'VARCHAR', doc: 'what was wrong, in words'},
    {name: 'sha256', type: 'VARCHAR', doc: 'content hash when known'},
    {name: 'locator', type: 'VARCHAR', doc: "where inside the file ('line 3'), or null"},
    {name: 'rejected_at', type: 'TIMESTAMPTZ', doc: 'when'},
  ],
})

const registry = new Map<string, TableDef>()

/** Adds a table to the lake's schema (stages register theirs at import time). */
export function registerTable(def: TableDef): TableDef {
  const existing = registry.get(def.id)
  if (existing && existing !== def) throw new Error(`lake: table ${def.id} is registered twice`)
  registry.set(def.id, def)
  return def
}

/** Builds a table definition with the standard provenance columns and registers it. */
export function defineTable(def: Omit<TableDef, 'columns'> & {columns: readonly ColumnDef[]}): TableDef {
  return registerTable(table(def))
}

for (const t of [BRONZE_IMAGES, BRONZE_SOURCES, BRONZE_CAPTIONS, BRONZE_REJECTS]) registerTable(t)

export function allTables(): TableDef[] {
  return [...registry.values()].sort((a, b) => a.id.localeCompare(b.id))
}

export function getTable(id: string): TableDef {
  const def = registry.get(id)
  if (!def) throw new Error(`lake: unknown table ${id}; known tables: ${[...registry.keys()].join(', ')}`)
  return def
}

/** Columns that staged rows carry (everything but commit_id). */
export function stagedColumns(def: TableDef): readonly ColumnDef[] {
  return def.columns.filter((c) => c.name !== 'commit_id')
}

export const SILVER_IMAGES = defineTable({
  id: 'silver.images',
  doc: 'One row per distinct image after a full decode: normalized derivative, perceptual hashes, quality measures, and status ok/rejected.',
  key: 'sha256',
  sortBy: 'sha256',
  columns: [
    {name: 'sha256', type: 'VARCHAR', doc: 'the image (bronze.images.sha256)'},
    {name: 'status', type: 'VARCHAR', doc: "'ok' or 'rejected'"},
    {name: 'reason', type: 'VARCHAR', doc: 'why rejected: undecodable, unsupported_codec (HEIC: no HEVC decoder in this build), too_small, extreme_aspect_ratio, too_many_pixels, object_missing (the original was gone from the object store); null when ok'},
    {name: 'message', type: 'VARCHAR', doc: 'what was wrong, in words; null when ok'},
    {name: 'format', type: 'VARCHAR', doc: 'format of the original'},
    {name: 'width', type: 'INTEGER', doc: 'original width after EXIF orientation'},
    {name: 'height', type: 'INTEGER', doc: 'original height after EXIF orientation'},
    {name: 'normalized_sha256', type: 'VARCHAR', doc: 'SHA-256 of the normalized derivative in the object store', objectRef: true},
    {name: 'normalized_format', type: 'VARCHAR', doc: 'format of the derivative (jpeg by default)'},
    {name: 'normalized_width', type: 'INTEGER', doc: 'derivative width'},
    {name: 'normalized_height', type: 'INTEGER', doc: 'derivative height'},
    {name: 'normalized_bytes', type: 'BIGINT', doc: 'derivative size in bytes'},
    {name: 'phash', type: 'VARCHAR', doc: '64-bit perceptual hash (DCT pHash), 16 hex digits'},
    {name: 'dhash', type: 'VARCHAR', doc: '64-bit difference hash, 16 hex digits'},
    {name: 'sharpness', type: 'DOUBLE', doc: 'variance of the Laplacian of the greyscale derivative (higher is sharper)'},
    {name: 'brightness', type: 'DOUBLE', doc: 'mean luma, 0–255'},
    {name: 'contrast', type: 'DOUBLE', doc: 'standard deviation of luma'},
    {name: 'aspect_ratio', type: 'DOUBLE', doc: 'width / height after orientation'},
    {name: 'processed_at', type: 'TIMESTAMPTZ', doc: 'when the image was normalized'},
  ],
})

export const SILVER_CAPTIONS = defineTable({
  id: 'silver.captions',
  doc: 'One row per distinct (image, source, cleaned caption): human captions cleaned from bronze, and model captions with the model and settings that wrote them.',
  key: 'caption_id',
  sortBy: 'sha256, caption_id',
  columns: [
    {name: 'caption_id', type: 'VARCHAR', doc: 'SHA-256 of (image, source, model settings, text) for ok rows; of the bronze caption for rejected ones'},
    {name: 'sha256', type: 'VARCHAR', doc: 'the image'},
    {name: 'status', type: 'VARCHAR', doc: "'ok' or 'rejected'"},
    {name: 'reason', type: 'VARCHAR', doc: 'why rejected: empty, too_long, not_a_caption, invalid_utf8, generation_failed; null when ok'},
    {name: 'message', type: 'VARCHAR', doc: 'what was wrong, in words; null when ok'},
    {name: 'text', type: 'VARCHAR', doc: 'cleaned caption (null when rejected)'},
    {name: 'raw_text', type: 'VARCHAR', doc: 'the text before cleaning'},
    {name: 'words', type: 'INTEGER', doc: 'whitespace-separated words'},
    {name: 'tokens', type: 'INTEGER', doc: 'words and punctuation marks'},
    {name: 'source', type: 'VARCHAR', doc: "'human' or 'model'"},
    {name: 'source_kind', type: 'VARCHAR', doc: "for human captions the bronze source kind (sidecar, jsonl, csv, coco); 'model' otherwise"},
    {name: 'source_file', type: 'VARCHAR', doc: 'file the human caption came from'},
    {name: 'bronze_caption_id', type: 'VARCHAR', doc: 'first bronze caption that produced this row, in the order bronze committed them; raw_text, source_kind and source_file are its (all: silver.caption_sources)'},
    {name: 'model_id', type: 'VARCHAR', doc: 'model that wrote the caption (model captions only)'},
    {name: 'model_revision', type: 'VARCHAR', doc: 'model revision or content hash of its weights'},
    {name: 'model_dtype', type: 'VARCHAR', doc: 'weights precision (fp32, q8, …)'},
    {name: 'generation', type: 'JSON', doc: 'generation parameters (max_new_tokens, num_beams, …)'},
    {name: 'cleaning_version', type: 'INTEGER', doc: 'version of the cleaning rules applied'},
    {name: 'created_at', type: 'TIMESTAMPTZ', doc: 'when the row was made'},
  ],
})

export const SILVER_CAPTION_SOURCES = defineTable({
  id: 'silver.caption_sources',
  doc: 'Lineage: every bronze caption silver has processed, and the silver caption it became (several bronze captions can clean to one).',
  key: 'bronze_caption_id',
  sortBy: 'bronze_caption_id',
  columns: [
    {name: 'bronze_caption_id', type: 'VARCHAR', doc: 'bronze.captions.caption_id'},
    {name: 'caption_id', type: 'VARCHAR', doc: 'silver.captions.caption_id it became'},
    {name: 'sha256', type: 'VARCHAR', doc: 'the image'},
    {name: 'status', type: 'VARCHAR', doc: "'ok' or 'rejected'"},
  ],
})

export const GOLD_PAIRS = defineTable({
  id: 'gold.pairs',
  doc: 'The training view: image–caption pairs that passed the quality filters, with near-duplicate group and a deterministic split that never separates a group.',
  key: 'pair_id',
  sortBy: 'split, group_id, sha256, caption_id',
  columns: [
    {name: 'pair_id', type: 'VARCHAR', doc: 'SHA-256 of (image, caption_id)'},
    {name: 'sha256', type: 'VARCHAR', doc: 'the image'},
    {name: 'caption_id', type: 'VARCHAR', doc: 'silver.captions.caption_id'},
    {name: 'caption', type: 'VARCHAR', doc: 'cleaned caption text'},
    {name: 'caption_source', type: 'VARCHAR', doc: "'human' or 'model'"},
    {name: 'model_id', type: 'VARCHAR', doc: 'for model captions'},
    {name: 'split', type: 'VARCHAR', doc: "'train', 'val' or 'test' — stable hash of group_id"},
    {name: 'group_id', type: 'VARCHAR', doc: 'near-duplicate group (sha256 of its first member); images in one group share a split'},
    {name: 'image_sha256', type: 'VARCHAR', doc: 'the normalized derivative to train on (silver.images.normalized_sha256)', objectRef: true},
    {name: 'width', type: 'INTEGER', doc: 'derivative width'},
    {name: 'height', type: 'INTEGER', doc: 'derivative height'},
    {name: 'phash', type: 'VARCHAR', doc: 'perceptual hash of the image'},
    {name: 'sharpness', type: 'DOUBLE', doc: 'silver quality measure'},
    {name: 'words', type: 'INTEGER', doc: 'caption words'},
    {name: 'created_at', type: 'TIMESTAMPTZ', doc: 'when the pair entered gold'},
  ],
})

export const GOLD_EXCLUDED = defineTable({
  id: 'gold.excluded',
  doc: 'Pairs gold considered and left out, with the filter that excluded them (so every decision is visible and nothing is reconsidered twice).',
  key: 'pair_id',
  sortBy: 'reason, sha256',
  columns: [
    {name: 'pair_id', type: 'VARCHAR', doc: 'SHA-256 of (image, caption_id)'},
    {name: 'sha256', type: 'VARCHAR', doc: 'the image'},
    {name: 'caption_id', type: 'VARCHAR', doc: 'silver.captions.caption_id'},
    {name: 'reason', type: 'VARCHAR', doc: 'filter: min_side, min_sharpness, min_words, max_words, caption_source, near_duplicate (--dedupe), near_duplicate_conflict (a new image near images already in two splits; --full regroups)'},
    {name: 'detail', type: 'VARCHAR', doc: 'the value and the threshold'},
    {name: 'group_id', type: 'VARCHAR', doc: 'near-duplicate group'},
  ],
})
