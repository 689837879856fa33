/**
 * `mlcap watch`: folders → bronze, continuously.
 *
 * Events are hints, not truth. chokidar tells us a path appeared or changed; we then wait
 * until the file is complete (its size and modification time unchanged for `stabilityMs`,
 * which a file renamed into place already is), batch ready files, and hand each batch to
 * the ingest machinery (`ingestFiles`) as one commit. Because chokidar can lose events in a
 * burst (the inotify queue overflows silently) and nothing is watched while mlcap is not
 * running, the folders are also rescanned at start and every `rescanMs`, and whatever the
 * lake does not have yet is offered again. Exactly-once comes from the commit's keys
 * (content hash + path), never from the events, so offering a file twice is harmless.
 *
 * The catalog is opened only for the moment of each commit; `query`, `status`, `etl` and
 * `ingest` in other terminals keep working. Core only: this module never prints; callers
 * receive typed events (`onEvent`) and a status snapshot (`status()`).
 */
import {watch as chokidarWatch, type FSWatcher} from 'chokidar'
import type {Stats} from 'node:fs'
import {promises as fs, existsSync, realpathSync, statSync} from 'node:fs'
import path from 'node:path'

import {CatalogOptions, ensureCatalog, withCatalog} from './catalog.js'
import {compactTable, COMPACT_DEFAULTS, SMALL_LIVE_FILE, TableCompaction} from './compact.js'
import {SIDECAR_IMAGE_EXTENSIONS, sidecarImageCandidates} from './captionSources.js'
import {formatDuration} from './duration.js'
import {invalidParameter, MlcapError, UsageError} from './errors.js'
import {INGEST_DEFAULTS, ingestFiles, IngestSummary, isUnchanged, KnownSource, loadKnownSources} from './ingest.js'
import {LakeLayout} from './layout.js'
import type {RejectReason} from './rejectReasons.js'
import {beginRun, finishRun, Run} from './runs.js'
import type {StageSummary} from './stageRun.js'
import {walkInputs, WalkEntry} from './walk.js'

export const WATCH_DEFAULTS = Object.freeze({
  /** Commit when this many files are ready… */
  batchFiles: 500,
  /** …or when the oldest ready file was first seen this long ago, whichever comes first. */
  batchMs: 1000,
  /** A file is complete when its size and mtime have not changed for this long. */
  stabilityMs: 500,
  /** How often pending files are checked and timers looked at. */
  pollMs: 100,
  /** Full rescans of the folders (besides the one at start). 0 turns them off. */
  rescanMs: 5 * 60_000,
  /**
   * An image that looks cut short (no end marker) and was modified less than this long ago
   * is probably still being written: it is retried instead of rejected.
   */
  incompleteGraceMs: 30_000,
  /** `then` stages run this long after the last commit that added rows… */
  stageDebounceMs: 5000,
  /** …but no later than this after the first one (continuous arrivals do not starve them). */
  stageMaxWaitMs: 60_000,
  /** Compact a table once it has this many small files (0: never compact automatically). */
  compactFiles: 32,
})

/** Temporary and hidden names, ignored until renamed: dotfiles, `~` backups, partial downloads. */
const TEMPORARY_NAME = /(^\.|~$|\.(part|partial|tmp|temp|crdownload|download|opdownload|swp)$)/i

export function isTemporaryName(name: string): boolean {
  return TEMPORARY_NAME.test(name)
}

const MANIFEST_NAME = /^(metadata\.(jsonl|csv)|.*\.json)$/i
const IMAGE_EXTENSIONS = new Set(SIDECAR_IMAGE_EXTENSIONS.map((e) => e.toLowerCase()))

export interface WatchOptions extends CatalogOptions {
  batchFiles?: number
  batchMs?: number
  stabilityMs?: number
  pollMs?: number
  rescanMs?: number
  incompleteGraceMs?: number
  /** Stages to run after new data arrives (debounced, never two runs at once). */
  then?: readonly string[]
  /** Run the `then` stages on this schedule too, even without new data. */
  everyMs?: number
  stageDebounceMs?: number
  stageMaxWaitMs?: number
  compactFiles?: number
  /** Rows below which a data file counts as small (compaction's targetRows). */
  compactTargetRows?: number
  keepGps?: boolean
  maxPixels?: number
  maxCaptionBytes?: number
  /** Files read at once within a batch (default 2 × cores). */
  concurrency?: number
  onEvent?: (event: WatchEvent) => void
}

type Settings = Required<
  Pick<
    WatchOptions,
    | 'batchFiles'
    | 'batchMs'
    | 'stabilityMs'
    | 'pollMs'
    | 'rescanMs'
    | 'incompleteGraceMs'
    | 'stageDebounceMs'
    | 'stageMaxWaitMs'
    | 'compactFiles'
  >
> & {everyMs: number; then: string[]}

interface At {
  /** ISO timestamp of the event. */
  at: string
}

export type WatchEvent = At &
  (
    | {type: 'started'; runId: string; lake: string; dirs: string[]; settings: Record<string, unknown>}
    | {type: 'rescan'; reason: 'start' | 'periodic'; files: number; offered: number; seconds: number}
    | {
        type: 'batch_committed'
        /** Null when everything in the batch was already in the lake. */
        commitId: number | null
        files: number
        images: {new: number; known: number}
        sources: {new: number}
        captions: {found: number; new: number}
        rejects: {total: number; new: number; byReason: Record<string, number>}
        /** Files put back because they looked half-written. */
        deferred: number
        seconds: number
        /** Longest time a file of this batch waited from first sighting to its commit. */
        maxWaitMs: number
      }
    | {type: 'rejected'; path: string | null; reason: RejectReason; message: string}
    | {type: 'compacted'; table: string; commitId: number | null; filesBefore: number; filesAfter: number; rows: number}
    | {type: 'stage_started'; stage: string; trigger: 'data' | 'schedule'}
    | {
        type: 'stage_finished'
        stage: string
        status: StageSummary['status'] | 'failed'
        seconds: number
        runId?: string
        added?: Record<string, number>
        error?: string
        /** StageSummary.warnings, when there are any. */
        warnings?: string[]
      }
    | {type: 'error'; code: string; message: string; hint?: string}
    | {type: 'stopped'; reason: string; totals: WatchStatus}
  )

export interface WatchStatus {
  /** Files the watcher took notice of (new or changed, not already in the lake). */
  seen: number
  /** Files that became new sources (image occurrences) in the lake. */
  ingested: number
  rejected: number
  /** Files waiting to be complete, ready for the next batch, or in the batch being committed. */
  pending: number
  /** Caption sidecars waiting for their image to arrive. */
  waitingCaptions: number
  commits: number
  lastCommit: {commitId: number; at: string} | null
  stageRuns: number
  stageFailures: number
  stageRunning: string | null
  compactions: number
}

export interface Watcher {
  readonly runId: string
  readonly dirs: readonly string[]
  status(): WatchStatus
  /** Resolves the next time nothing is pending, in flight or being rescanned (tests, benchmarks). */
  whenIdle(): Promise<void>
  /** Starts a rescan now (resolves when it has offered what it found). */
  rescan(): Promise<void>
  /**
   * Stops watching: abandons the batch in flight after committing what of it was complete,
   * waits for a running stage to notice the abort, finishes the run. Idempotent.
   */
  stop(reason?: string): Promise<WatchStatus>
  /** Resolves once stopped. */
  readonly done: Promise<WatchStatus>
}

interface Pending {
  root: string
  size: number
  mtimeMs: number
  dueAt: number
  seenAt: number
}

interface Ready {
  root: string
  readyAt: number
  seenAt: number
}

function settingsOf(options: WatchOptions): Settings {
  const s = {
    batchFiles: options.batchFiles ?? WATCH_DEFAULTS.batchFiles,
    batchMs: options.batchMs ?? WATCH_DEFAULTS.batchMs,
    stabilityMs: options.stabilityMs ?? WATCH_DEFAULTS.stabilityMs,
    pollMs: options.pollMs ?? WATCH_DEFAULTS.pollMs,
    rescanMs: options.rescanMs ?? WATCH_DEFAULTS.rescanMs,
    incompleteGraceMs: options.incompleteGraceMs ?? WATCH_DEFAULTS.incompleteGraceMs,
    stageDebounceMs: options.stageDebounceMs ?? WATCH_DEFAULTS.stageDebounceMs,
    stageMaxWaitMs: options.stageMaxWaitMs ?? WATCH_DEFAULTS.stageMaxWaitMs,
    compactFiles: options.compactFiles ?? WATCH_DEFAULTS.compactFiles,
    everyMs: options.everyMs ?? 0,
    then: [...(options.then ?? [])].flatMap((n) => n.split(',')).map((n) => n.trim()).filter(Boolean),
  }
  const check = (name: string, value: number, min: number, expected: string) => {
    if (!Number.isFinite(value) || value < min) throw invalidParameter(`watch ${name}`, expected, value)
  }
  check('batchFiles', s.batchFiles, 1, 'a positive number of files')
  check('batchMs', s.batchMs, 0, 'milliseconds ≥ 0')
  check('stabilityMs', s.stabilityMs, 0, 'milliseconds ≥ 0')
  check('pollMs', s.pollMs, 10, 'milliseconds ≥ 10')
  check('rescanMs', s.rescanMs, 0, 'milliseconds ≥ 0 (0: no periodic rescans)')
  check('incompleteGraceMs', s.incompleteGraceMs, 0, 'milliseconds ≥ 0')
  check('everyMs', s.everyMs, 0, 'milliseconds ≥ 0')
  if (s.compactFiles !== 0) check('compactFiles', s.compactFiles, 2, '0 (off) or at least 2 files')
  if (s.rescanMs > 0 && s.rescanMs < 1000) throw invalidParameter('watch rescan interval', 'at least 1s (or 0 for none)', `${s.rescanMs}ms`)
  if (s.everyMs > 0 && s.everyMs < 1000) throw invalidParameter('watch --every', 'at least 1s', `${s.everyMs}ms`)
  if (s.everyMs > 0 && s.then.length === 0) {
    throw new UsageError('WATCH_EVERY_WITHOUT_THEN', `watch: --every ${formatDuration(s.everyMs)} was given without --then, so there is nothing to run on that schedule`, 'Name the stages too, e.g. --then silver,gold --every 1h.')
  }
  return s
}

/** The watched folders, as real paths; refuses missing folders, files, and overlap with the lake. */
function resolveDirs(layout: LakeLayout, dirs: readonly string[]): string[] {
  if (dirs.length === 0) throw new UsageError('WATCH_NO_FOLDER', 'watch: no folder given; expected one or more folders to watch', 'e.g. mlcap watch ./inbox')
  const lakeReal = existsSync(layout.root) ? realpathSync(layout.root) : layout.root
  const out: string[] = []
  for (const dir of dirs) {
    const abs = path.resolve(dir)
    const stat = statSync(abs, {throwIfNoEntry: false})
    if (!stat) throw new UsageError('WATCH_FOLDER_NOT_FOUND', `watch: folder ${JSON.stringify(dir)} does not exist (resolved to ${abs}); expected an existing folder`, `Create it first (mkdir -p ${abs}) or check the path for typos.`)
    if (!stat.isDirectory()) throw new UsageError('WATCH_NOT_A_FOLDER', `watch: ${abs} is a file; expected a folder to watch`, `Watch its folder (${path.dirname(abs)}), or ingest the file once with mlcap ingest.`)
    const real = realpathSync(abs)
    if (within(real, lakeReal) || within(lakeReal, real)) {
      throw new UsageError(
        'WATCH_OVERLAPS_LAKE',
        `watch: folder ${real} and the lake ${lakeReal} overlap; expected the watched folder to be outside the lake and not to contain it (the lake's own objects would be ingested again)`,
        'Watch a folder outside the lake, or put the lake elsewhere with --lake DIR.',
      )
    }
    if (!out.some((o) => within(o, real))) out.push(real)
  }
  return out.filter((d) => !out.some((o) => o !== d && within(o, d)))
}

function within(parent: string, target: string): boolean {
  return target === parent || target.startsWith(parent.endsWith(path.sep) ? parent : parent + path.sep)
}

const now = () => Date.now()
const iso = () => new Date().toISOString()

/** Loads the stage registry only when stages are asked for (it pulls in sharp and the models). */
async function resolveWatchStages(names: string[]): Promise<typeof import('./stages.js') | null> {
  if (names.length === 0) return null
  const stages = await import('./stages.js')
  for (const name of names) {
    if (name === 'all' || stages.STAGES[name]) continue
    const known = Object.keys(stages.STAGES)
    throw new UsageError(
      'WATCH_UNKNOWN_STAGE',
      `watch: unknown stage ${JSON.stringify(name)} in --then; expected one of ${known.length > 0 ? [...known, 'all'].join(', ') : '(no stages registered)'}`,
      'Stages are registered in src/lake/stages.ts; name them separated by commas, e.g. --then silver,gold.',
    )
  }
  return stages
}

/**
 * Starts watching `dirs` and ingesting what arrives into the lake. Resolves once the
 * watcher is running (the initial rescan continues in the background); throws a
 * UsageError for bad folders, settings or stage names before anything starts.
 */
export async function watchFolders(layout: LakeLayout, dirs: readonly string[], options: WatchOptions = {}): Promise<Watcher> {
  const settings = settingsOf(options)
  const roots = resolveDirs(layout, dirs)
  const stagesModule = await resolveWatchStages(settings.then)
  const stageNames = stagesModule ? stagesModule.resolveStages(settings.then) : []
  await ensureCatalog(layout, options)
  const known = await loadKnownSources(layout, options)
  const smallFiles = settings.compactFiles > 0 ? await countSmallFiles(layout, options) : new Map<string, number>()
  const run = await beginRun(
    layout,
    'watch',
    {
      roots,
      batch_files: settings.batchFiles,
      batch_ms: settings.batchMs,
      stability_ms: settings.stabilityMs,
      rescan_ms: settings.rescanMs,
      then: stageNames,
      every_ms: settings.everyMs,
      compact_files: settings.compactFiles,
      keep_gps: Boolean(options.keepGps),
      max_pixels: options.maxPixels ?? INGEST_DEFAULTS.maxPixels,
      max_caption_bytes: options.maxCaptionBytes ?? INGEST_DEFAULTS.maxCaptionBytes,
      source: 'watch',
    },
    options,
  )
  const session = new WatchSession(layout, roots, settings, options, run, known, smallFiles, stagesModule, stageNames)
  try {
    await session.start()
  } catch (error) {
    await session.stop('failed to start').catch(() => undefined)
    throw error
  }
  return session
}

/** Live data files per table with fewer rows than compaction's target (what it would merge). */
async function countSmallFiles(layout: LakeLayout, options: WatchOptions): Promise<Map<string, number>> {
  const targetRows = options.compactTargetRows ?? COMPACT_DEFAULTS.targetRows
  const rows = await withCatalog(
    layout,
    async (c) =>
      (
        await c.runAndReadAll(
          `SELECT table_name, count(*) FROM files WHERE ${SMALL_LIVE_FILE} GROUP BY 1`,
          {target: targetRows},
        )
      ).getRows(),
    options,
  )
  return new Map(rows.map(([t, n]) => [String(t), Number(n)]))
}

class WatchSession implements Watcher {
  readonly runId: string
  readonly done: Promise<WatchStatus>
  private resolveDone!: (s: WatchStatus) => void

  private fsWatcher?: FSWatcher
  private ticker?: NodeJS.Timeout
  private readonly abort = new AbortController()
  private stopping: Promise<WatchStatus> | null = null

  /** Files seen, waiting until their size and mtime stay put. */
  private readonly pending = new Map<string, Pending>()
  /** Complete files waiting for the next batch (insertion order = arrival order). */
  private readonly ready = new Map<string, Ready>()
  /** Files of the batch being ingested now. */
  private readonly inBatch = new Set<string>()
  /** Files that changed while their batch was in flight: offered again afterwards. */
  private readonly dirty = new Set<string>()
  /** Sidecar captions waiting for their image (pending, or not arrived yet). */
  private readonly heldCaptions = new Map<string, Ready>()
  /** Rejects found by rescans (links leaving the folder, unreadable entries), for the next batch. */
  private rejectQueue: Extract<WalkEntry, {kind: 'reject'}>[] = []
  private readonly recordedRejects = new Set<string>()
  /** Files handled in this session (not images, which `known` covers), by `size:mtime`. */
  private readonly processed = new Map<string, string>()

  private batchRunning: Promise<void> | null = null
  private batchFailures = 0
  private batchBackoffUntil = 0
  private rescanning: Promise<void> | null = null
  private nextRescanAt = Infinity
  private stageRunning: Promise<void> | null = null
  private stageDue: {at: number; first: number; trigger: 'data' | 'schedule'} | null = null
  private nextEveryAt = Infinity
  private ticking = false
  private idleWaiters: Array<() => void> = []

  private readonly counters = {
    seen: 0,
    ingested: 0,
    rejected: 0,
    commits: 0,
    lastCommit: null as WatchStatus['lastCommit'],
    stageRuns: 0,
    stageFailures: 0,
    stageRunning: null as string | null,
    compactions: 0,
  }

  constructor(
    private readonly layout: LakeLayout,
    readonly dirs: readonly string[],
    private readonly settings: Settings,
    private readonly options: WatchOptions,
    private readonly run: Run,
    private readonly known: Map<string, KnownSource>,
    private readonly smallFiles: Map<string, number>,
    private readonly stages: typeof import('./stages.js') | null,
    private readonly stageNames: string[],
  ) {
    this.runId = run.runId
    this.done = new Promise((resolve) => (this.resolveDone = resolve))
  }

  // ---------------------------------------------------------------- lifecycle

  async start(): Promise<void> {
    const roots = new Set(this.dirs)
    const lake = this.layout.root
    const watcher = chokidarWatch([...this.dirs], {
      ignoreInitial: true, // the start rescan covers what is already there
      alwaysStat: true,
      followSymlinks: false,
      ignored: (p: string) => !roots.has(p) && (isTemporaryName(path.basename(p)) || within(lake, p)),
    })
    this.fsWatcher = watcher
    watcher.on('add', (p: string, stats?: Stats) => this.guard(() => this.noticed(p, stats)))
    watcher.on('change', (p: string, stats?: Stats) => this.guard(() => this.noticed(p, stats)))
    watcher.on('unlink', (p: string) => this.guard(() => this.removed(p)))
    watcher.on('error', (error: unknown) => this.reportError(error, 'watch: the file watcher reported an error; rescans still pick up files it misses. On Linux, ENOSPC means fs.inotify.max_user_watches is too low.'))
    await new Promise<void>((resolve, reject) => {
      watcher.once('ready', () => resolve())
      watcher.once('error', reject)
    })
    this.emit({
      type: 'started',
      at: iso(),
      runId: this.runId,
      lake: this.layout.root,
      dirs: [...this.dirs],
      settings: {
        batchFiles: this.settings.batchFiles,
        batchMs: this.settings.batchMs,
        stabilityMs: this.settings.stabilityMs,
        rescanMs: this.settings.rescanMs,
        then: this.stageNames,
        everyMs: this.settings.everyMs,
        compactFiles: this.settings.compactFiles,
      },
    })
    const t = now()
    this.nextRescanAt = this.settings.rescanMs > 0 ? t + this.settings.rescanMs : Infinity
    this.nextEveryAt = this.settings.everyMs > 0 ? t + this.settings.everyMs : Infinity
    this.ticker = setInterval(() => void this.tick(), this.settings.pollMs)
    void this.rescan('start')
  }

  stop(reason = 'stopped'): Promise<WatchStatus> {
    if (this.stopping) return this.stopping
    this.stopping = (async () => {
      if (this.ticker) clearInterval(this.ticker)
      this.abort.abort()
      try {
        await this.fsWatcher?.close()
      } catch (error) {
        this.reportError(error, 'watch: closing the file watcher failed')
      }
      await Promise.allSettled([this.batchRunning, this.rescanning, this.stageRunning])
      const totals = this.status()
      await finishRun(
        this.layout,
        this.run,
        {status: 'succeeded', rowsIn: totals.seen, rowsOut: totals.ingested, rejects: {}},
        this.options,
      ).catch((error) => this.reportError(error, 'watch: could not record the end of the run; `mlcap status` may show it as running until the next command marks it interrupted'))
      this.emit({type: 'stopped', at: iso(), reason, totals})
      for (const wake of this.idleWaiters.splice(0)) wake()
      this.resolveDone(totals)
      return totals
    })()
    return this.stopping
  }

  status(): WatchStatus {
    let waiting = 0
    for (const caption of this.heldCaptions.keys()) if (!this.captionImageTracked(caption)) waiting++
    return {
      seen: this.counters.seen,
      ingested: this.counters.ingested,
      rejected: this.counters.rejected,
      pending: this.pending.size + this.ready.size + this.inBatch.size + this.rejectQueue.length + (this.heldCaptions.size - waiting),
      waitingCaptions: waiting,
      commits: this.counters.commits,
      lastCommit: this.counters.lastCommit,
      stageRuns: this.counters.stageRuns,
      stageFailures: this.counters.stageFailures,
      stageRunning: this.counters.stageRunning,
      compactions: this.counters.compactions,
    }
  }

  whenIdle(): Promise<void> {
    if (this.stopping) return Promise.resolve()
    return new Promise((resolve) => this.idleWaiters.push(resolve))
  }

  rescan(reason: 'start' | 'periodic' = 'periodic'): Promise<void> {
    if (this.rescanning) return this.rescanning
    if (this.stopping) return Promise.resolve()
    this.rescanning = this.doRescan(reason)
      .catch((error) => this.reportError(error, 'watch: the rescan failed; it is tried again at the next interval'))
      .finally(() => {
        this.rescanning = null
      })
    return this.rescanning
  }

  // ---------------------------------------------------------------- events

  private noticed(p: string, stats?: Stats | {size: number; mtimeMs: number}): void {
    if (this.stopping) return
    if (stats && 'isFile' in stats && !stats.isFile() && !stats.isSymbolicLink()) return
    const t = now()
    if (this.inBatch.has(p)) {
      this.dirty.add(p)
      return
    }
    const wasReady = this.ready.get(p)
    if (wasReady) this.ready.delete(p)
    const held = this.heldCaptions.get(p)
    if (held) return // read when its image's batch runs
    const pending = this.pending.get(p)
    if (pending) {
      pending.dueAt = t + this.settings.stabilityMs
      if (stats) {
        pending.size = stats.size
        pending.mtimeMs = stats.mtimeMs
      }
      return
    }
    const root = this.rootOf(p)
    if (!root) return
    if (!wasReady) this.counters.seen++
    // A file last modified longer ago than the quiet period (typically renamed into place:
    // a rename keeps the mtime) only needs one confirming stat; a fresh one waits.
    const quietAt = stats ? Math.max(stats.mtimeMs + this.settings.stabilityMs, t) : Infinity
    this.pending.set(p, {
      root,
      size: stats?.size ?? -1,
      mtimeMs: stats?.mtimeMs ?? -1,
      dueAt: Math.min(t + this.settings.stabilityMs, quietAt),
      seenAt: wasReady?.seenAt ?? t,
    })
  }

  private removed(p: string): void {
    if (this.stopping) return
    // Gone before it was read: offered anyway, so the batch records it (file_vanished).
    const pending = this.pending.get(p)
    if (pending) {
      this.pending.delete(p)
      this.ready.set(p, {root: pending.root, readyAt: now(), seenAt: pending.seenAt})
      return
    }
    const held = this.heldCaptions.get(p)
    if (held) {
      this.heldCaptions.delete(p)
      this.ready.set(p, held)
    }
  }

  private rootOf(p: string): string | undefined {
    let best: string | undefined
    for (const root of this.dirs) if (within(root, p) && (!best || root.length > best.length)) best = root
    return best
  }

  // ---------------------------------------------------------------- the loop

  private async tick(): Promise<void> {
    if (this.ticking || this.stopping) return
    this.ticking = true
    try {
      await this.settle()
      const t = now()
      if (this.stopping) return
      if (!this.batchRunning && t >= this.batchBackoffUntil && this.batchIsDue(t)) {
        this.batchRunning = this.runBatch().finally(() => {
          this.batchRunning = null
          setImmediate(() => void this.tick()) // the next batch may be due already
        })
      }
      if (t >= this.nextRescanAt) {
        this.nextRescanAt = t + this.settings.rescanMs
        void this.rescan('periodic')
      }
      if (t >= this.nextEveryAt) {
        this.nextEveryAt = t + this.settings.everyMs
        this.stageDue = {at: t, first: this.stageDue?.first ?? t, trigger: 'schedule'}
      }
      if (this.stageDue && !this.stageRunning && t >= this.stageDue.at) this.startStages()
      if (this.idleWaiters.length > 0 && this.isIdle()) for (const wake of this.idleWaiters.splice(0)) wake()
    } catch (error) {
      this.reportError(error, 'watch: unexpected error in the watch loop; it keeps running')
    } finally {
      this.ticking = false
    }
  }

  private isIdle(): boolean {
    let heldWithImage = 0
    for (const caption of this.heldCaptions.keys()) if (this.captionImageTracked(caption)) heldWithImage++
    return (
      this.pending.size === 0 &&
      this.ready.size === 0 &&
      this.inBatch.size === 0 &&
      this.rejectQueue.length === 0 &&
      heldWithImage === 0 &&
      !this.batchRunning &&
      !this.rescanning &&
      !this.stageRunning &&
      this.stageDue === null
    )
  }

  private batchIsDue(t: number): boolean {
    const waiting = this.ready.size + this.rejectQueue.length
    if (waiting === 0) return false
    if (waiting >= this.settings.batchFiles) return true
    // The wait counts from when a file was first seen, so the settle time and the batch
    // wait overlap: a lone file is committed about max(settle, batch wait) after arriving.
    let oldest = this.rejectQueue.length > 0 ? t - this.settings.batchMs : Infinity
    for (const r of this.ready.values()) oldest = Math.min(oldest, r.seenAt)
    return t - oldest >= this.settings.batchMs
  }

  /** Stats the pending files whose quiet period is over; unchanged ones become ready. */
  private async settle(): Promise<void> {
    const t = now()
    const due: Array<[string, Pending]> = []
    for (const entry of this.pending) if (entry[1].dueAt <= t) due.push(entry)
    if (due.length === 0) return
    const limit = 64
    for (let i = 0; i < due.length; i += limit) {
      await Promise.all(due.slice(i, i + limit).map(([p, pending]) => this.settleOne(p, pending)))
    }
  }

  private async settleOne(p: string, pending: Pending): Promise<void> {
    let stat: Stats | undefined
    try {
      stat = await fs.stat(p)
    } catch {
      // Gone or unreadable: the batch records why (file_vanished / unreadable).
    }
    if (this.pending.get(p) !== pending) return // changed meanwhile
    const t = now()
    if (stat && stat.isDirectory()) {
      this.pending.delete(p)
      return
    }
    if (stat && (stat.size !== pending.size || stat.mtimeMs !== pending.mtimeMs)) {
      pending.size = stat.size
      pending.mtimeMs = stat.mtimeMs
      pending.dueAt = t + this.settings.stabilityMs
      return
    }
    if (stat && MANIFEST_NAME.test(path.basename(p)) && this.imagesTrackedUnder(path.dirname(p))) {
      pending.dueAt = t + this.settings.stabilityMs // read it after the images it names
      return
    }
    this.pending.delete(p)
    const ready: Ready = {root: pending.root, readyAt: t, seenAt: pending.seenAt}
    if (stat && isSidecar(p) && (this.captionImageTracked(p) || !captionImageExists(p))) {
      this.heldCaptions.set(p, ready)
      return
    }
    this.ready.set(p, ready)
  }

  private isTracked(p: string): boolean {
    return this.pending.has(p) || this.ready.has(p) || this.inBatch.has(p) || this.heldCaptions.has(p)
  }

  /**
   * Whether the image a sidecar belongs to is on its way: pending or ready, so the caption
   * goes with the image's batch. (An image in the batch being committed now is not: a
   * caption that becomes ready then goes into the next batch, after the image is known.)
   */
  private captionImageTracked(caption: string): boolean {
    for (const image of sidecarImageCandidates(caption)) {
      if (this.pending.has(image) || this.ready.has(image)) return true
    }
    return false
  }

  /** Held sidecars whose image is no longer on its way but exists: offer them now. */
  private releaseHeldCaptions(): void {
    for (const [caption, held] of this.heldCaptions) {
      if (this.captionImageTracked(caption) || !captionImageExists(caption)) continue
      if (sidecarImageCandidates(caption).some((image) => this.inBatch.has(image))) continue
      this.heldCaptions.delete(caption)
      this.ready.set(caption, {...held, readyAt: now()})
    }
  }

  private imagesTrackedUnder(dir: string): boolean {
    const isImage = (p: string) => within(dir, p) && IMAGE_EXTENSIONS.has(path.extname(p).toLowerCase())
    for (const p of this.pending.keys()) if (isImage(p)) return true
    for (const p of this.ready.keys()) if (isImage(p)) return true
    for (const p of this.inBatch) if (isImage(p)) return true
    return false
  }

  // ---------------------------------------------------------------- batches

  private async runBatch(): Promise<void> {
    const started = now()
    const taken: Array<[string, Ready]> = []
    for (const entry of this.ready) {
      if (taken.length >= this.settings.batchFiles) break
      taken.push(entry)
    }
    for (const [p] of taken) this.ready.delete(p)
    // Sidecars held for an image of this batch go with it.
    const captions: Array<[string, Ready]> = []
    for (const [p] of taken) {
      for (const caption of sidecarsOf(p)) {
        const held = this.heldCaptions.get(caption)
        if (held) {
          this.heldCaptions.delete(caption)
          captions.push([caption, held])
        }
      }
    }
    const rejects = this.rejectQueue.splice(0)
    const all = [...taken, ...captions]
    for (const [p] of all) this.inBatch.add(p)

    const deferred = new Map<string, {size: number; mtimeMs: number}>()
    const rejected: Array<{path: string | null; reason: RejectReason; message: string}> = []
    const entries: WalkEntry[] = [...rejects]
    const byReal = new Map<string, string>()
    const entryOf = new Map<string, WalkEntry>()
    for (const [p, r] of all) {
      const entry = await this.entryFor(p, r)
      if (entry.kind === 'file') byReal.set(entry.path, p)
      entryOf.set(p, entry)
      entries.push(entry)
    }
    let summary: IngestSummary
    try {
      summary = await ingestFiles(this.layout, this.run, entries, {
        known: this.known,
        source: 'watch',
        batchSize: Number.MAX_SAFE_INTEGER, // one batch, one commit
        concurrency: this.options.concurrency,
        keepGps: this.options.keepGps,
        maxPixels: this.options.maxPixels,
        maxCaptionBytes: this.options.maxCaptionBytes,
        lockTimeoutMs: this.options.lockTimeoutMs,
        signal: this.abort.signal,
        onReject: (r) => rejected.push(r),
        deferIncomplete: (entry) => {
          if (Date.now() - entry.mtimeMs >= this.settings.incompleteGraceMs) return false
          deferred.set(byReal.get(entry.path) ?? entry.path, {size: entry.size, mtimeMs: entry.mtimeMs})
          return true
        },
      })
    } catch (error) {
      // Put everything back (in front of newer arrivals) and retry later with backoff.
      for (const [p] of all) this.inBatch.delete(p)
      const back = new Map<string, Ready>(all)
      for (const [p, r] of this.ready) if (!back.has(p)) back.set(p, r)
      this.ready.clear()
      for (const [p, r] of back) this.ready.set(p, r)
      this.rejectQueue.unshift(...rejects)
      this.batchFailures++
      const wait = Math.min(30_000, 1000 * 2 ** (this.batchFailures - 1))
      this.batchBackoffUntil = now() + wait
      this.reportError(error, `watch: committing a batch of ${all.length} file(s) failed; retrying in ${formatDuration(wait)} (nothing is lost: the files stay where they are)`)
      return
    }
    this.batchFailures = 0
    const t = now()
    let maxWaitMs = 0
    const interrupted = summary.status === 'interrupted'
    for (const [p, r] of all) {
      this.inBatch.delete(p)
      maxWaitMs = Math.max(maxWaitMs, t - r.seenAt)
      const d = deferred.get(p)
      if (this.dirty.delete(p)) {
        this.noticed(p)
      } else if (d && !interrupted) {
        // Looked half-written: look again after a pause (a write resets the wait sooner).
        this.pending.set(p, {root: r.root, size: d.size, mtimeMs: d.mtimeMs, dueAt: t + Math.max(2000, this.settings.stabilityMs * 4), seenAt: r.seenAt})
      } else if (!interrupted) {
        const entry = entryOf.get(p)
        if (entry?.kind === 'file') this.processed.set(p, `${entry.size}:${Math.trunc(entry.mtimeMs)}`)
      }
    }
    this.releaseHeldCaptions()
    for (const r of rejects) this.recordedRejects.add(`${r.path}|${r.reason}`)
    this.counters.ingested += summary.sources.new
    this.counters.rejected += rejected.length
    const commitId = summary.commits.length > 0 ? summary.commits[summary.commits.length - 1] : null
    if (commitId !== null) {
      this.counters.commits++
      this.counters.lastCommit = {commitId, at: iso()}
    }
    this.emit({
      type: 'batch_committed',
      at: iso(),
      commitId,
      files: all.length + rejects.length,
      images: summary.images,
      sources: summary.sources,
      captions: summary.captions,
      rejects: {total: summary.rejects.total, new: summary.rejects.new, byReason: summary.rejects.byReason},
      deferred: deferred.size,
      seconds: (t - started) / 1000,
      maxWaitMs,
    })
    for (const r of rejected) this.emit({type: 'rejected', at: iso(), ...r})
    if (commitId === null) return
    const added = summary.images.new + summary.sources.new + summary.captions.new
    if (added > 0 && this.stageNames.length > 0) {
      const first = this.stageDue?.first ?? t
      this.stageDue = {at: Math.min(t + this.settings.stageDebounceMs, first + this.settings.stageMaxWaitMs), first, trigger: this.stageDue?.trigger ?? 'data'}
    }
    await this.compactIfNeeded(summary)
  }

  /** A batch's entry for one path: the file as it is now, or a reject if it went away. */
  private async entryFor(p: string, r: Ready): Promise<WalkEntry> {
    try {
      const lstat = await fs.lstat(p)
      let real = p
      let stat = lstat
      if (lstat.isSymbolicLink()) {
        real = await fs.realpath(p)
        if (!this.dirs.some((d) => within(d, real))) {
          return {
            kind: 'reject',
            path: p,
            root: r.root,
            reason: 'symlink_outside_root',
            message: `watch: symbolic link ${p} points to ${real}, outside the watched folders (${this.dirs.join(', ')}); links are followed only inside them. Copy the file in instead.`,
          }
        }
        stat = await fs.stat(real)
      }
      if (!stat.isFile()) {
        return {kind: 'reject', path: p, root: r.root, reason: 'not_a_regular_file', message: `watch: ${p} is not a regular file (socket, FIFO or device); only regular files are read. Leave it out of the watched folder.`}
      }
      const rel = path.relative(r.root, p).split(path.sep).join('/')
      return {kind: 'file', path: real, root: r.root, relPath: rel, size: stat.size, mtimeMs: stat.mtimeMs}
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        return {
          kind: 'reject',
          path: p,
          root: r.root,
          reason: 'file_vanished',
          message: `watch: ${p} was deleted or moved away ${formatDuration(now() - r.seenAt)} after it appeared, before it could be read; it was not ingested. If it was moved within the watched folder, its new name is ingested.`,
        }
      }
      return {kind: 'reject', path: p, root: r.root, reason: 'unreadable', message: `watch: cannot read ${p} (${code ?? (error as Error).message}); expected a readable file. Fix its permissions; the next rescan offers it again.`}
    }
  }

  private async compactIfNeeded(summary: IngestSummary): Promise<void> {
    if (this.settings.compactFiles === 0) return
    const grew: Array<[string, number]> = [
      ['bronze.images', summary.images.new],
      ['bronze.sources', summary.sources.new],
      ['bronze.captions', summary.captions.new],
      ['bronze.rejects', summary.rejects.new],
    ]
    for (const [table, n] of grew) if (n > 0) this.smallFiles.set(table, (this.smallFiles.get(table) ?? 0) + 1)
    for (const [table, count] of this.smallFiles) {
      if (count < this.settings.compactFiles || this.abort.signal.aborted) continue
      let outcome: TableCompaction
      try {
        outcome = await compactTable(this.layout, table, {
          minFiles: this.settings.compactFiles,
          targetRows: this.options.compactTargetRows,
          run: this.run,
          lockTimeoutMs: this.options.lockTimeoutMs,
        })
      } catch (error) {
        this.smallFiles.set(table, 0) // count again from here rather than retry after every batch
        this.reportError(error, `watch: compacting ${table} failed; the table is intact, only slower to read. Try \`mlcap compact --table ${table}\`.`)
        continue
      }
      this.smallFiles.set(table, outcome.commitId === null ? 0 : outcome.filesAfter)
      if (outcome.commitId !== null) this.counters.compactions++
      this.emit({type: 'compacted', at: iso(), table, commitId: outcome.commitId, filesBefore: outcome.filesBefore, filesAfter: outcome.filesAfter, rows: outcome.rows})
    }
  }

  // ---------------------------------------------------------------- rescans

  private async doRescan(reason: 'start' | 'periodic'): Promise<void> {
    const started = now()
    let files = 0
    let offered = 0
    for await (const entry of walkInputs(this.dirs)) {
      if (this.stopping) return
      if (entry.kind === 'skipped') continue
      if (entry.kind === 'reject') {
        const key = `${entry.path}|${entry.reason}`
        if (this.recordedRejects.has(key) || this.rejectQueue.some((r) => `${r.path}|${r.reason}` === key)) continue
        this.rejectQueue.push({...entry, message: entry.message.replace(/^ingest: /, 'watch: ')})
        continue
      }
      if (within(this.layout.root, entry.path) || isTemporaryName(path.basename(entry.path))) continue
      files++
      // The walk reports real paths; events and this session's maps use the path in the folder.
      const p = path.join(entry.root, ...entry.relPath.split('/'))
      if (this.isTracked(p)) continue
      if (isUnchanged(this.known.get(entry.path), entry)) continue
      if (this.processed.get(p) === `${entry.size}:${Math.trunc(entry.mtimeMs)}`) continue
      this.noticed(p, {size: entry.size, mtimeMs: entry.mtimeMs})
      offered++
    }
    this.releaseHeldCaptions()
    this.emit({type: 'rescan', at: iso(), reason, files, offered, seconds: (now() - started) / 1000})
  }

  // ---------------------------------------------------------------- stages

  private startStages(): void {
    const due = this.stageDue
    if (!due || !this.stages) return
    this.stageDue = null
    const stages = this.stages
    this.stageRunning = (async () => {
      for (const name of this.stageNames) {
        if (this.abort.signal.aborted) break
        const started = now()
        this.counters.stageRunning = name
        this.counters.stageRuns++
        this.emit({type: 'stage_started', at: iso(), stage: name, trigger: due.trigger})
        try {
          const summary = await stages.STAGES[name].run(this.layout, {signal: this.abort.signal, lockTimeoutMs: this.options.lockTimeoutMs})
          this.emit({
            type: 'stage_finished', at: iso(), stage: name, status: summary.status, seconds: (now() - started) / 1000, runId: summary.runId, added: summary.added,
            ...(summary.warnings ? {warnings: summary.warnings} : {}),
          })
        } catch (error) {
          this.counters.stageFailures++
          const message = (error as Error).message
          this.emit({type: 'stage_finished', at: iso(), stage: name, status: 'failed', seconds: (now() - started) / 1000, error: message})
          this.reportError(error, `watch: stage ${name} failed; later stages of this run were skipped and it runs again with the next new data`)
          break
        }
      }
    })().finally(() => {
      this.counters.stageRunning = null
      this.stageRunning = null
    })
  }

  // ---------------------------------------------------------------- reporting

  private emit(event: WatchEvent): void {
    try {
      this.options.onEvent?.(event)
    } catch {
      // A failing listener must not stop the watcher; the listener owns its errors.
    }
  }

  private reportError(error: unknown, context: string): void {
    const e = error as Partial<MlcapError> & Error
    this.emit({
      type: 'error',
      at: iso(),
      code: typeof e?.code === 'string' ? e.code : 'WATCH_ERROR',
      message: `${context}: ${e?.message ?? String(error)}`,
      hint: typeof e?.hint === 'string' ? e.hint : undefined,
    })
  }

  private guard(work: () => void): void {
    try {
      work()
    } catch (error) {
      this.reportError(error, 'watch: handling a file event failed; the next rescan offers the file again')
    }
  }
}

// -------------------------------------------------------------------- sidecars

function isSidecar(p: string): boolean {
  return p.toLowerCase().endsWith('.txt')
}

function captionImageExists(caption: string): boolean {
  return sidecarImageCandidates(caption).some((p) => existsSync(p))
}

/** Sidecars that may belong to an image: `a.jpg` → `a.jpg.txt`, `a.txt`. */
function sidecarsOf(image: string): string[] {
  const ext = path.extname(image)
  if (!IMAGE_EXTENSIONS.has(ext.toLowerCase())) return []
  return [`${image}.txt`, `${image.slice(0, -ext.length)}.txt`]
}
