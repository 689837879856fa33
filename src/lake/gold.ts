import {CommitConflictError} from './commit.js'
import {LakeLayout} from './layout.js'
import {DEFAULT_NEAR_DUPLICATE_DISTANCE, hexToHash} from './perceptualHash.js'
import {groupNearDuplicates} from './nearDuplicates.js'
import {OK_SILVER_PAIRS, PAIR_ID, STALE_GOLD_PAIRS, UNDECIDED_PAIR} from './pending.js'
import {LakeReader} from './reader.js'
import {GOLD_EXCLUDED, GOLD_PAIRS} from './schema.js'
import {assignSplit, SplitRatios, DEFAULT_SPLIT_RATIOS, DEFAULT_SPLIT_SEED} from './split.js'
import {StageOptions, StageRun, StageSummary} from './stageRun.js'

export interface GoldFilters {
  /** Shorter side of the normalized image, pixels. */
  minSide: number
  /** Variance of the Laplacian; 0 keeps everything. */
  minSharpness: number
  minWords: number
  maxWords: number
  /** Caption sources admitted: 'human', 'model'. */
  captionSources: readonly string[]
}

export const DEFAULT_GOLD_FILTERS: Readonly<GoldFilters> = Object.freeze({
  minSide: 64,
  minSharpness: 0,
  minWords: 1,
  maxWords: 100,
  captionSources: Object.freeze(['human', 'model']),
})

export interface GoldOptions extends StageOptions {
  filters?: Partial<GoldFilters>
  /** Hamming distance of pHashes at or below which two images are near-duplicates. */
  nearDuplicateDistance?: number
  /** Keep one image per near-duplicate group (the best copy that passes the filters: see betterCopy); the others go to gold.excluded. */
  dedupe?: boolean
  ratios?: SplitRatios
  /** Changes every split assignment; recorded with the run. */
  splitSeed?: string
  full?: boolean
}

interface Candidate {
  pair_id: string
  sha256: string
  caption_id: string
  caption: string
  caption_source: string
  model_id: string | null
  image_sha256: string
  width: number
  height: number
  phash: string
  sharpness: number
  words: number
  /** Pixels and file size of the original (for --dedupe's choice of the copy to keep). */
  original_pixels: number
  original_bytes: number
}

/**
 * silver → gold. Pairs every ok image with each of its ok captions, applies the quality
 * filters, groups near-duplicate images (pHash within the distance) and gives every group
 * one split from a stable hash of its id — so a group never straddles splits, and an image
 * lands in the same split on every run and machine. Incremental: only pairs gold has not
 * decided on (in gold.pairs or gold.excluded) are considered; a new image that is a
 * near-duplicate of one already in gold joins that image's group and split.
 */
export async function runGold(layout: LakeLayout, options: GoldOptions = {}): Promise<StageSummary> {
  // An incremental run decides new pairs' groups and splits from the gold it read; if another
  // gold run commits in between, its commit is refused (CommitConflictError) and the run
  // starts over from the new gold, so near-duplicates never end in two groups (or splits).
  // A --full rebuild is refused and started over the same way, so that it never drops the
  // pairs the other run committed (it is computed from silver, cheap to redo).
  const earlier = {commits: [] as number[], added: {} as Record<string, number>}
  for (let attempt = 1; ; attempt++) {
    try {
      const summary = await runGoldOnce(layout, options, earlier)
      // Batches an earlier attempt committed before its conflict are part of this command's work.
      for (const [table, n] of Object.entries(earlier.added)) summary.added[table] = (summary.added[table] ?? 0) + n
      summary.commits.unshift(...earlier.commits)
      return summary
    } catch (error) {
      if (!(error instanceof CommitConflictError) || options.signal?.aborted) throw error
      if (attempt >= GOLD_ATTEMPTS) throw overtaken(error, attempt)
    }
  }
}

/** The error when every attempt was overtaken: says so, names the last writer and what to do. */
function overtaken(error: CommitConflictError, attempts: number): CommitConflictError {
  const {commitId, runId} = error.conflict
  return new CommitConflictError(
    error.conflict,
    `gold: ${attempts} attempts in a row were overtaken by other runs committing to the tables gold reads or writes (the last: commit ${commitId} of run ${runId}); nothing of the last attempt was committed`,
    'Another writer is committing continuously (typically `mlcap watch --then gold` or `--then all`, or another `etl run gold`). Pause it, or let it do the gold runs, and run this command again.',
  )
}

/** Attempts of a gold run whose commit another gold run's commit made stale. */
const GOLD_ATTEMPTS = 5

async function runGoldOnce(
  layout: LakeLayout,
  options: GoldOptions,
  earlier: {commits: number[]; added: Record<string, number>},
): Promise<StageSummary> {
  // No ensureCatalog: a stage reads an existing lake (LAKE_NOT_FOUND otherwise), it never creates one.
  const filters: GoldFilters = {...DEFAULT_GOLD_FILTERS, ...options.filters}
  const distance = options.nearDuplicateDistance ?? DEFAULT_NEAR_DUPLICATE_DISTANCE
  const ratios = options.ratios ?? DEFAULT_SPLIT_RATIOS
  const seed = options.splitSeed ?? DEFAULT_SPLIT_SEED
  const {candidates, decided, inputCommit, full, stalePairs} = await goldInputs(layout, Boolean(options.full), options)
  const params = {
    filters, near_duplicate_distance: distance, dedupe: Boolean(options.dedupe), ratios, split_seed: seed, full, input_commit: inputCommit,
    ...(stalePairs > 0 ? {rebuilt_because: `${stalePairs} gold pairs no longer matched silver (silver was rebuilt)`} : {}),
  }
  const stage = await StageRun.begin(layout, 'gold', params, options, full ? [GOLD_PAIRS.id, GOLD_EXCLUDED.id] : [])
  // An incremental run builds on the gold it read; a rebuild would retire, with the old gold,
  // pairs another run committed after it read silver. Either way, another run's commit to gold
  // after that read refuses ours.
  stage.unchangedSince = {commitId: inputCommit, tables: [GOLD_PAIRS.id, GOLD_EXCLUDED.id]}
  try {
    // Near-duplicate groups over the new images and the images gold already holds.
    const hashes = new Map<string, bigint>()
    for (const d of decided) if (d.phash) hashes.set(d.sha256, hexToHash(d.phash))
    for (const c of candidates) if (c.phash) hashes.set(c.sha256, hexToHash(c.phash))
    const components = groupNearDuplicates(
      [...hashes].map(([sha256, phash]) => ({sha256, phash})),
      distance,
    )
    const {groupOf, conflicted} = resolveGroups(components, decided)
    // A group gold already split keeps its split; a new group gets the stable hash's.
    const splitOfGroup = new Map<string, string>()
    for (const d of decided) if (d.split) splitOfGroup.set(d.group_id, d.split)
    const cachedSplit = (groupId: string) => {
      let split = splitOfGroup.get(groupId)
      if (!split) splitOfGroup.set(groupId, (split = assignSplit(groupId, ratios, seed)))
      return split
    }
    const keeper = options.dedupe ? chooseKeepers(candidates, decided, groupOf, (c) => excludedBy(c, filters) === null && !conflicted.has(c.sha256)) : null
    const now = new Date().toISOString()
    let done = 0
    for (const c of candidates) {
      if (options.signal?.aborted) break
      const groupId = groupOf.get(c.sha256) ?? c.sha256
      const exclusion = excludedBy(c, filters) ?? (conflicted.has(c.sha256)
        ? {reason: 'near_duplicate_conflict', detail: conflicted.get(c.sha256)!}
        : null) ?? (keeper && keeper.get(groupId) !== c.sha256
        ? {reason: 'near_duplicate', detail: `group ${groupId} keeps ${keeper.get(groupId)}`}
        : null)
      if (exclusion) {
        stage.reject(exclusion.reason)
        stage.batch.add(GOLD_EXCLUDED.id, {
          pair_id: c.pair_id,
          sha256: c.sha256,
          caption_id: c.caption_id,
          reason: exclusion.reason,
          detail: exclusion.detail,
          group_id: groupId,
          run_id: stage.runId,
        })
      } else {
        stage.batch.add(GOLD_PAIRS.id, {
          ...c,
          split: cachedSplit(groupId),
          group_id: groupId,
          created_at: now,
          run_id: stage.runId,
        })
      }
      done++
      options.onProgress?.(done, candidates.length)
      await stage.maybeCommit()
    }
    return await stage.finish(done)
  } catch (error) {
    if (error instanceof CommitConflictError) {
      earlier.commits.push(...stage.commits)
      for (const [table, n] of Object.entries(stage.added)) earlier.added[table] = (earlier.added[table] ?? 0) + n
    }
    return stage.fail(error)
  }
}

interface Decided {
  sha256: string
  group_id: string
  split: string | null
  /** Null when silver no longer has the image as ok (gold is then rebuilt, see STALE_GOLD_PAIRS). */
  phash: string | null
  included: boolean
}

/**
 * What gold decides on. When gold.pairs no longer matches silver (stalePairs > 0), an
 * incremental run cannot mend it and becomes a full rebuild (`full` in the result).
 */
async function goldInputs(
  layout: LakeLayout,
  fullAsked: boolean,
  options: StageOptions,
): Promise<{candidates: Candidate[]; decided: Decided[]; inputCommit: number; full: boolean; stalePairs: number}> {
  const reader = await LakeReader.open(layout, options)
  try {
    const c = reader.connection
    const stalePairs = fullAsked ? 0 : Number((await c.runAndReadAll(STALE_GOLD_PAIRS)).getRows()[0][0])
    const full = fullAsked || stalePairs > 0
    const candidates = (
      await c.runAndReadAll(
        `SELECT ${PAIR_ID} AS pair_id, i.sha256, c.caption_id, c.text AS caption,
                c.source AS caption_source, c.model_id, i.normalized_sha256 AS image_sha256,
                i.normalized_width AS width, i.normalized_height AS height, i.phash, i.sharpness, c.words,
                i.width::BIGINT * i.height AS original_pixels,
                (SELECT max(b.bytes) FROM bronze.images b WHERE b.sha256 = i.sha256) AS original_bytes
           FROM ${OK_SILVER_PAIRS}
            ${full ? '' : `AND ${UNDECIDED_PAIR}`}
          ORDER BY i.sha256, c.caption_id`,
      )
    ).getRowObjectsJson() as unknown as Candidate[]
    const decided = full
      ? []
      : ((
          await c.runAndReadAll(
            // The group of an image's gold.pairs rows when it has any: an image gold had only
            // excluded can join another group when a later caption gets it in (resolveGroups).
            `SELECT d.sha256, coalesce(any_value(d.group_id) FILTER (WHERE d.included), any_value(d.group_id)) AS group_id,
                    any_value(d.split) AS split, any_value(i.phash) AS phash,
                    bool_or(d.included) AS included
               FROM (SELECT sha256, group_id, split, true AS included FROM gold.pairs
                     UNION ALL SELECT sha256, group_id, NULL, false FROM gold.excluded) d
               JOIN silver.images i USING (sha256)
              GROUP BY d.sha256
              ORDER BY d.sha256`,
          )
        ).getRowObjectsJson() as unknown as Decided[])
    for (const row of candidates) {
      row.width = Number(row.width)
      row.height = Number(row.height)
      row.sharpness = Number(row.sharpness)
      row.words = Number(row.words)
      row.original_pixels = Number(row.original_pixels)
      row.original_bytes = Number(row.original_bytes ?? 0)
    }
    return {candidates, decided, inputCommit: reader.snapshot.commitId, full, stalePairs}
  } finally {
    reader.close()
  }
}

/**
 * Group ids for every image: a component that contains images gold already grouped keeps
 * an existing group id, so earlier pairs never change group or split; a new component is
 * named after its smallest member. The id new images join is the smallest group id of
 * the component's images in gold.pairs (the group that has a split), and only without
 * any the smallest of its images gold only excluded: a group of excluded images has no
 * split yet, and joining it would give the new images that group's own hash split while
 * the component's images in gold.pairs sit in another one — a chain of near-copies
 * straddling splits. An image gold only excluded so far (filters, a conflict) is placed
 * like a new one when a new caption of it is considered.
 *
 * A component whose earlier images gold put in different splits (a new image is a near
 * copy of images in train and in test, or links them through other new images) cannot take
 * its new images without a chain of near-copies straddling splits, and moving earlier images
 * would change splits users already trained on. Its images not in gold.pairs yet are
 * `conflicted` — new ones, and ones gold excluded before that now have another caption —
 * excluded with why, until `etl run gold --full` regroups everything from content.
 */
function resolveGroups(components: Map<string, string>, decided: Decided[]): {groupOf: Map<string, string>; conflicted: Map<string, string>} {
  const inGold = new Map<string, string>() // component root → smallest group id of its images in gold.pairs
  const onlyExcluded = new Map<string, string>() // component root → smallest group id of its images gold only excluded
  const splits = new Map<string, Set<string>>() // component root → splits of its images in gold.pairs
  for (const d of decided) {
    const root = components.get(d.sha256) ?? d.sha256
    const ids = d.split ? inGold : onlyExcluded
    const current = ids.get(root)
    if (!current || d.group_id < current) ids.set(root, d.group_id)
    if (d.split) splits.set(root, (splits.get(root) ?? new Set()).add(d.split))
  }
  const groupOf = new Map<string, string>()
  for (const [sha256, root] of components) groupOf.set(sha256, inGold.get(root) ?? onlyExcluded.get(root) ?? root)
  const conflicted = new Map<string, string>()
  const inGoldImages = new Set(decided.filter((d) => d.split).map((d) => d.sha256))
  for (const [sha256, root] of components) {
    const rootSplits = splits.get(root)
    if (inGoldImages.has(sha256) || !rootSplits || rootSplits.size < 2) continue
    conflicted.set(sha256, `near-duplicate of images gold already holds in ${[...rootSplits].sort().join(' and ')}; etl run gold --full regroups`)
  }
  for (const d of decided) if (d.split) groupOf.set(d.sha256, d.group_id) // earlier pairs stand: an image in gold.pairs keeps its group and split
  return {groupOf, conflicted}
}

/**
 * With dedupe: the one image each group keeps — one already in gold (the smallest sha256:
 * `decided` is in sha256 order), else the best new copy (betterCopy) that can enter gold
 * (`eligible`: a pair of it passes the filters). Choosing among all images would let a copy that
 * the filters exclude anyway (too small, captions too short) push every other image of its
 * group out as near_duplicate, leaving the group with nothing in gold.
 */
function chooseKeepers(
  candidates: Candidate[],
  decided: Decided[],
  groupOf: Map<string, string>,
  eligible: (c: Candidate) => boolean,
): Map<string, string> {
  const keeper = new Map<string, string>()
  for (const d of decided) if (d.included && !keeper.has(d.group_id)) keeper.set(d.group_id, d.sha256)
  const best = new Map<string, Candidate>()
  for (const c of candidates) {
    const g = groupOf.get(c.sha256) ?? c.sha256
    if (keeper.has(g) || !eligible(c)) continue
    const b = best.get(g)
    if (!b || betterCopy(c, b)) best.set(g, c)
  }
  for (const [g, c] of best) keeper.set(g, c.sha256)
  return keeper
}

/**
 * Which of two near-duplicates --dedupe keeps: the one with the most original pixels (not a
 * downscaled copy), then the larger original file (not a harder-compressed re-encode), then
 * the sharper derivative, then the smaller sha256 (so the choice never depends on order).
 * Sharpness comes late because JPEG blocking and downscaling both raise the variance of the
 * Laplacian: ranked first, it kept thumbnails and q50 re-encodes over their originals.
 */
function betterCopy(c: Candidate, than: Candidate): boolean {
  if (c.original_pixels !== than.original_pixels) return c.original_pixels > than.original_pixels
  if (c.original_bytes !== than.original_bytes) return c.original_bytes > than.original_bytes
  if (c.sharpness !== than.sharpness) return c.sharpness > than.sharpness
  return c.sha256 < than.sha256
}

function excludedBy(c: Candidate, f: GoldFilters): {reason: string; detail: string} | null {
  const side = Math.min(c.width, c.height)
  if (side < f.minSide) return {reason: 'min_side', detail: `shorter side ${side} px < ${f.minSide}`}
  if (c.sharpness < f.minSharpness) return {reason: 'min_sharpness', detail: `sharpness ${c.sharpness.toFixed(1)} < ${f.minSharpness}`}
  if (c.words < f.minWords) return {reason: 'min_words', detail: `${c.words} words < ${f.minWords}`}
  if (c.words > f.maxWords) return {reason: 'max_words', detail: `${c.words} words > ${f.maxWords}`}
  if (!f.captionSources.includes(c.caption_source)) return {reason: 'caption_source', detail: `source ${c.caption_source} not in ${f.captionSources.join(',')}`}
  return null
}
