import {Args, Flags} from '@oclif/core'

import {ingestContentFlags, ingestContentOptions} from '../cli/ingestFlags.js'
import {LakeCommand} from '../cli/lakeCommand.js'
import {interruptSignal, Progress} from '../cli/progress.js'
import {EXIT, MlcapError} from '../lake/errors.js'
import {ingest, INGEST_DEFAULTS, IngestSummary} from '../lake/ingest.js'

export default class Ingest extends LakeCommand<typeof Ingest> {
  static override summary = 'Add image files and the captions beside them to the lake (bronze).'

  static override description = `Walks files and folders (recursively), decides each file's type from its content, stores every distinct image once in the object store (by SHA-256) and records what its headers say. Captions are read from <image>.txt sidecars, Hugging Face ImageFolder metadata.jsonl / metadata.csv (file_name + text or caption), and COCO captions JSON.

Bad inputs (truncated or non-image files, decompression bombs, SVG, symlinks leaving the given folders, malformed manifests, invalid or enormous captions) never stop the batch: each is recorded in bronze.rejects with a reason code, and the summary counts them. Re-ingesting the same files adds nothing.`

  static override examples = [
    '<%= config.bin %> ingest ./photos',
    '<%= config.bin %> ingest ./a ./b/img.jpg --lake /data/lake',
    '<%= config.bin %> ingest ./photos --json',
    '<%= config.bin %> ingest ./photos --strict   # exit 1 if anything was rejected',
  ]

  static override args = {
    paths: Args.string({description: 'files or folders to ingest', required: true}),
  }

  static override strict = false

  static override flags = {
    strict: Flags.boolean({description: 'Exit with status 1 when any input was rejected (the rest is still committed).'}),
    ...ingestContentFlags(),
    'batch-size': Flags.integer({description: 'Files per commit.', default: INGEST_DEFAULTS.batchSize, min: 1}),
    rehash: Flags.boolean({description: 'Re-read files the lake already knows by path, size and modification time.'}),
  }

  async run(): Promise<IngestSummary> {
    const paths = this.positionals
    const progress = new Progress(this.interactive, 'ingest')
    const interrupt = interruptSignal(() => this.note('\nStopping: committing what is complete (Ctrl-C again to quit at once)…'))
    let summary: IngestSummary
    try {
      summary = await ingest(this.layout, paths, {
        ...ingestContentOptions(this.flags),
        batchSize: this.flags['batch-size'],
        rehash: this.flags.rehash,
        signal: interrupt.signal,
        onProgress: (p) => progress.update(p.processed, p.discovered, {unit: 'files', extra: p.rejected ? `${p.rejected} rejected` : ''}),
      })
    } finally {
      progress.stop()
      interrupt.dispose()
    }
    this.printSummary(summary)
    this.noteWarnings(summary.warnings)
    // Non-zero so `mlcap ingest … && mlcap etl run all` does not go on with half the input.
    if (summary.status === 'interrupted') process.exitCode = EXIT.interrupted
    if (this.flags.strict && summary.rejects.total > 0) {
      throw new MlcapError('INGEST_REJECTS', `ingest: ${summary.rejects.total} input(s) rejected and --strict is set`, {
        hint: 'See them with: mlcap query "select path, reason, message from bronze.rejects where run_id = \'' + summary.runId + '\'"',
      })
    }
    return summary
  }

  private printSummary(s: IngestSummary): void {
    if (this.jsonEnabled()) return
    const nothingNew = s.commits.length === 0
    this.log(
      `${s.status === 'interrupted' ? 'Interrupted; committed what was complete. ' : ''}` +
        `${s.filesSeen} files: ${s.images.new} new images, ${s.images.known} already known, ` +
        `${s.captions.new} new captions (${s.captions.found} found), ${s.rejects.total} rejected ` +
        `in ${s.seconds.toFixed(1)} s.`,
    )
    for (const [reason, count] of Object.entries(s.rejects.byReason).sort((a, b) => b[1] - a[1])) {
      this.log(`  rejected ${String(count).padStart(6)}  ${reason}`)
    }
    if (s.skipped.hidden) this.log(`  skipped ${String(s.skipped.hidden).padStart(7)}  hidden files`)
    this.log(nothingNew ? 'Nothing new: the lake already had all of it.' : `Commit ${s.commits.join(', ')} (run ${s.runId}).`)
  }
}
