/**
 * Work waiting for each later stage, as one SQL count over the lake's views. Each stage
 * adds its entry here when it exists, and selects its work with the same clauses, so
 * `mlcap status` shows what `etl run` would do.
 */
export interface PendingWork {
  readonly stage: string
  readonly description: string
  /** A query returning one row with column `n`. */
  readonly sql: string
}

/** Bronze images silver has not processed (a FROM clause with `sha256`). */
export const NEW_BRONZE_IMAGES = 'bronze.images ANTI JOIN silver.images USING (sha256)'

/** For `bronze.captions b`: the caption is in no silver caption's lineage yet. */
export const NEW_BRONZE_CAPTION = 'NOT EXISTS (SELECT 1 FROM silver.caption_sources s WHERE s.bronze_caption_id = b.caption_id)'

/** Image–caption pairs gold may use (aliases `i`, `c`): both ok in silver. */
export const OK_SILVER_PAIRS = `silver.images i JOIN silver.captions c USING (sha256) WHERE i.status = 'ok' AND c.status = 'ok'`

/** For OK_SILVER_PAIRS: the pair's id in gold.pairs and gold.excluded. */
export const PAIR_ID = `sha256(i.sha256 || '|' || c.caption_id)`

/** For OK_SILVER_PAIRS: a pair gold has not decided on (neither in gold.pairs nor in gold.excluded). */
export const UNDECIDED_PAIR = `${PAIR_ID} NOT IN (SELECT pair_id FROM gold.pairs UNION ALL SELECT pair_id FROM gold.excluded)`

/**
 * Rows of gold.pairs that no longer match silver: the pair is not ok there any more, or its
 * image's derivative, size or pHash changed (`etl run silver --full` with other settings).
 * Incremental gold cannot mend them (it decides each pair once), so the next gold run
 * rebuilds gold.
 */
export const STALE_GOLD_PAIRS = `SELECT count(*) AS n FROM gold.pairs g
  WHERE NOT EXISTS (SELECT 1 FROM ${OK_SILVER_PAIRS} AND ${PAIR_ID} = g.pair_id
                      AND i.normalized_sha256 IS NOT DISTINCT FROM g.image_sha256
                      AND i.normalized_width IS NOT DISTINCT FROM g.width AND i.normalized_height IS NOT DISTINCT FROM g.height
                      AND i.phash IS NOT DISTINCT FROM g.phash)`

export const PENDING_WORK: readonly PendingWork[] = Object.freeze([
  {
    stage: 'silver',
    description: 'bronze images and captions silver has not processed',
    sql: `SELECT (SELECT count(*) FROM ${NEW_BRONZE_IMAGES})
               + (SELECT count(*) FROM bronze.captions b WHERE ${NEW_BRONZE_CAPTION}) AS n`,
  },
  {
    // Counted for any model: which model and settings `etl run caption` will use is only known
    // when it runs (it selects per model, revision, dtype and generation settings).
    stage: 'caption',
    description: 'ok silver images with no model caption yet, from any model (optional: only if you want model captions)',
    sql: `SELECT count(*) AS n FROM silver.images i
           WHERE i.status = 'ok'
             AND NOT EXISTS (SELECT 1 FROM silver.captions c WHERE c.source = 'model' AND c.status = 'ok' AND c.sha256 = i.sha256)`,
  },
  {
    stage: 'gold',
    description: 'ok silver image–caption pairs gold has not decided on (all of them, plus the stale gold pairs, when gold no longer matches silver and must be rebuilt)',
    sql: `WITH stale AS (${STALE_GOLD_PAIRS})
          SELECT CASE WHEN (SELECT n FROM stale) > 0
                      THEN (SELECT n FROM stale) + (SELECT count(*) FROM ${OK_SILVER_PAIRS})
                      ELSE (SELECT count(*) FROM ${OK_SILVER_PAIRS} AND ${UNDECIDED_PAIR}) END AS n`,
  },
])
