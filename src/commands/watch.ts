import {Args, Flags} from '@oclif/core'

import {ingestContentFlags, ingestContentOptions} from '../cli/ingestFlags.js'
import {LakeCommand} from '../cli/lakeCommand.js'
import {interruptSignal} from '../cli/progress.js'
import {formatDuration, parseDuration} from '../lake/duration.js'
import {watchFolders, WATCH_DEFAULTS, WatchEvent, WatchStatus} from '../lake/watch.js'

export default class Watch extends LakeCommand<typeof Watch> {
  static override summary = 'Watch folders and ingest images and captions as they arrive (bronze), continuously.'

  static override description = `Like \`mlcap ingest\`, continuously. A file is ingested once it is complete: unchanged for --settle (a file renamed into place already is). Temporary and hidden names (.part, .partial, .tmp, .crdownload, .download, .swp, names ending in ~, dotfiles) are ignored until renamed. Caption sidecars (a.txt beside a.jpg) are picked up whether they arrive before or after their image.

Events are hints: at start and every --rescan the folders are listed again and whatever the lake does not have yet is ingested (files added while watch was not running, events lost in a burst). Every image is stored once by content hash, so nothing is ever ingested twice, even after a crash.

Ready files are committed in micro-batches: every --batch-files files, or once the oldest ready file appeared --batch-wait ago, whichever comes first; each batch is one commit. Streaming makes small Parquet files: a table with --compact-after small files is compacted (see mlcap compact).

--then runs ETL stages after new data arrives (${formatDuration(WATCH_DEFAULTS.stageDebounceMs)} after the last commit, at most ${formatDuration(WATCH_DEFAULTS.stageMaxWaitMs)} after the first; never two runs at once); --every runs them on a schedule even without new data.

On a terminal a status line shows files seen, ingested, rejected, pending, the last commit and stage runs. With --json, every event is one JSON line on stdout (started, rescan, batch_committed, rejected, compacted, stage_started, stage_finished, error, stopped).

Ctrl-C or SIGTERM commits what of the batch in flight is complete and exits 0 (a second Ctrl-C quits at once; the lake is still at a commit). While watch runs, query, status, etl and ingest work from other terminals.`

  static override examples = [
    '<%= config.bin %> watch ./inbox',
    '<%= config.bin %> watch ./inbox ./phone-uploads --lake /data/lake',
    '<%= config.bin %> watch ./inbox --then silver,gold --every 1h',
    '<%= config.bin %> watch ./inbox --json >> watch.log   # one JSON line per event',
    '<%= config.bin %> watch ./inbox --batch-files 100 --batch-wait 5s --rescan 1m',
  ]

  static override args = {
    dirs: Args.string({description: 'folders to watch (recursively)', required: true}),
  }

  static override strict = false

  static override flags = {
    'batch-files': Flags.integer({description: 'Commit once this many files are ready…', default: WATCH_DEFAULTS.batchFiles, min: 1}),
    'batch-wait': Flags.string({description: '…or once the oldest ready file appeared this long ago.', default: formatDuration(WATCH_DEFAULTS.batchMs)}),
    settle: Flags.string({description: 'A file is complete when unchanged for this long.', default: formatDuration(WATCH_DEFAULTS.stabilityMs)}),
    rescan: Flags.string({description: 'Rescan the folders this often (0: only at start).', default: formatDuration(WATCH_DEFAULTS.rescanMs)}),
    then: Flags.string({description: 'Stages to run after new data arrives, comma-separated (e.g. silver,caption,gold).'}),
    every: Flags.string({description: 'Also run the --then stages on this schedule (e.g. 1h), even without new data.'}),
    'compact-after': Flags.integer({
      description: 'Compact a table once it has this many small files (0: never; see mlcap compact).',
      default: WATCH_DEFAULTS.compactFiles,
      min: 0,
    }),
    ...ingestContentFlags(),
  }

  /** --json is a stream: one compact line per event (and per error), never pretty-printed. */
  override logJson(json: unknown): void {
    process.stdout.write(JSON.stringify(json) + '\n')
  }

  async run(): Promise<WatchStatus | undefined> {
    const json = this.jsonEnabled()
    const line = new StatusLine(json ? 'silent' : this.interactive ? 'live' : 'plain')
    const interrupt = interruptSignal(() => line.note('Stopping: committing what is complete (Ctrl-C again to quit at once)…'))
    let totals: WatchStatus
    try {
      const watcher = await watchFolders(this.layout, this.positionals, {
        batchFiles: this.flags['batch-files'],
        batchMs: parseDuration('--batch-wait', this.flags['batch-wait']),
        stabilityMs: parseDuration('--settle', this.flags.settle),
        rescanMs: parseDuration('--rescan', this.flags.rescan),
        then: this.flags.then ? [this.flags.then] : [],
        everyMs: this.flags.every ? parseDuration('--every', this.flags.every) : 0,
        compactFiles: this.flags['compact-after'],
        ...ingestContentOptions(this.flags),
        onEvent: (event) => (json ? this.logJson(event) : this.describe(event, line)),
      })
      line.start(() => watcher.status())
      const stop = () => void watcher.stop(interrupt.signal.aborted ? 'signal' : 'stopped')
      if (interrupt.signal.aborted) stop()
      else interrupt.signal.addEventListener('abort', stop, {once: true})
      totals = await watcher.done
    } finally {
      line.stop()
      interrupt.dispose()
    }
    return json ? undefined : totals
  }

  /** Human-readable lines for the events worth a line; the status line shows the rest. */
  private describe(e: WatchEvent, line: StatusLine): void {
    switch (e.type) {
      case 'started':
        line.note(`Watching ${e.dirs.join(', ')} → ${e.lake} (run ${e.runId}). Ctrl-C to stop.`)
        break
      case 'rescan':
        if (e.offered > 0) line.note(`rescan (${e.reason}): ${e.files} files, ${e.offered} not yet in the lake`)
        break
      case 'batch_committed':
        if (e.commitId !== null) {
          line.note(
            `commit ${e.commitId}: ${e.files} files, ${e.images.new} new images, ${e.captions.new} new captions, ${e.rejects.total} rejected (${e.seconds.toFixed(1)} s)`,
          )
        }
        break
      case 'rejected':
        line.note(`  rejected  ${e.reason.padEnd(22)} ${e.path ?? ''}`)
        break
      case 'compacted':
        if (e.commitId !== null) line.note(`compacted ${e.table}: ${e.filesBefore} files → ${e.filesAfter} (commit ${e.commitId})`)
        break
      case 'stage_started':
        line.note(`stage ${e.stage} started (${e.trigger === 'data' ? 'new data' : 'schedule'})`)
        break
      case 'stage_finished':
        line.note(`stage ${e.stage} ${e.status} in ${e.seconds.toFixed(1)} s${e.error ? `: ${e.error}` : ''}`)
        for (const warning of e.warnings ?? []) line.note(`Warning: ${warning}`)
        break
      case 'error':
        line.note(`Error: ${e.message}${e.hint ? `\nHint: ${e.hint}` : ''}`)
        break
      case 'stopped':
        line.note(
          `Stopped: ${e.totals.seen} files seen, ${e.totals.ingested} ingested, ${e.totals.rejected} rejected, ${e.totals.commits} commits` +
            (e.totals.pending > 0 ? `; ${e.totals.pending} not yet complete (the next start picks them up)` : '') +
            '.',
        )
        break
    }
  }
}

/**
 * A one-line live status on stderr when it is a terminal; plain lines on stdout otherwise;
 * nothing with --json (stdout carries only the event lines then).
 * Notes print above the status line, which is redrawn after them and every second.
 */
class StatusLine {
  private timer?: NodeJS.Timeout
  private read?: () => WatchStatus
  private shown = false

  private readonly live: boolean

  /** live: status line on stderr (a terminal); plain: notes on stdout; silent: nothing (--json). */
  constructor(private readonly mode: 'live' | 'plain' | 'silent') {
    this.live = mode === 'live'
  }

  start(read: () => WatchStatus): void {
    this.read = read
    if (!this.live) return
    this.timer = setInterval(() => this.draw(), 1000)
    this.timer.unref()
    this.draw()
  }

  note(text: string): void {
    if (this.mode === 'silent') return
    if (this.live) {
      this.clear()
      process.stderr.write(text + '\n')
      this.draw()
    } else {
      process.stdout.write(text + '\n')
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.clear()
  }

  private clear(): void {
    if (this.shown) process.stderr.write('\r\x1b[K')
    this.shown = false
  }

  private draw(): void {
    if (!this.live || !this.read) return
    const s = this.read()
    const last = s.lastCommit ? `commit ${s.lastCommit.commitId} ${ago(s.lastCommit.at)}` : 'no commit yet'
    const stages = s.stageRunning ? `stage ${s.stageRunning} running` : s.stageRuns > 0 ? `${s.stageRuns} stage runs${s.stageFailures ? ` (${s.stageFailures} failed)` : ''}` : ''
    const parts = [
      `seen ${s.seen}`,
      `ingested ${s.ingested}`,
      `rejected ${s.rejected}`,
      `pending ${s.pending}`,
      s.waitingCaptions ? `${s.waitingCaptions} captions waiting for images` : '',
      last,
      stages,
    ].filter(Boolean)
    const text = `watch │ ${parts.join(' │ ')}`
    const width = process.stderr.columns || 120
    process.stderr.write('\r\x1b[K' + (text.length > width - 1 ? text.slice(0, width - 2) + '…' : text))
    this.shown = true
  }
}

function ago(isoTime: string): string {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(isoTime)) / 1000))
  return seconds < 60 ? `${seconds}s ago` : `${formatDuration(seconds * 1000)} ago`
}
