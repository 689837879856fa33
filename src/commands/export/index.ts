import {Flags} from '@oclif/core'

import {LakeCommand} from '../../cli/lakeCommand.js'
import {interruptSignal, Progress} from '../../cli/progress.js'
import {formatBytes} from '../../cli/table.js'
import {DEFAULT_SHARD_SIZE, EXPORT_FORMATS, type ExportFormat} from '../../export/index.js'
import {GOLD_PAIRS} from '../../lake/schema.js'
import {EXPORT_SPLITS, exportGold, type ExportGoldSummary, type ExportSplit} from '../../lake/exportGold.js'

export default class Export extends LakeCommand<typeof Export> {
  static override summary = 'Write a training set from gold.pairs in a format trainers load, with a manifest to verify it.'

  static override description = `One sample per image with its captions (ordered by caption_id), split by split, in SHA-256 order. Images are the normalized derivatives from silver (gold.pairs.image_sha256) or, with --original, the bytes as ingested.

Formats:
${Object.entries(EXPORT_FORMATS).map(([name, f]) => `- ${name}: ${f.description}`).join('\n')}

The same lake commit and arguments give byte-identical files. manifest.json records the lake commit, the arguments, the counts and the SHA-256 of every file; check a copy with \`mlcap export verify DIR\`. The export is written beside DIR and moved into place when complete: an interrupted export leaves nothing that looks finished.

--where is a SQL predicate over the columns of gold.pairs (${GOLD_PAIRS.columns.map((c) => c.name).join(', ')}); an image is exported with the captions of its selected pairs. It cannot read files or contain subqueries.`

  static override examples = [
    '<%= config.bin %> export --format hf --out ./export/hf',
    '<%= config.bin %> export --format webdataset --out ./wds --shard-size 5000 --split train',
    `<%= config.bin %> export --format coco --out ./coco --where "caption_source = 'human' AND words >= 5" --captions all`,
    '<%= config.bin %> export --format imagefolder --out ./sample --limit 100 --original',
    '<%= config.bin %> export --format jsonl --out ./jsonl --json',
    '<%= config.bin %> export --format webdataset --out ./wds --verify-images',
    '<%= config.bin %> export verify ./export/hf',
  ]

  static override flags = {
    format: Flags.string({char: 'f', description: 'Output format.', options: Object.keys(EXPORT_FORMATS), required: true}),
    out: Flags.string({char: 'o', description: 'Folder to create (must be new, empty, or an earlier export with --overwrite).', required: true}),
    split: Flags.string({description: 'Split to export.', options: [...EXPORT_SPLITS], default: 'all'}),
    where: Flags.string({description: 'SQL predicate over gold.pairs selecting the pairs to export.'}),
    limit: Flags.integer({description: 'At most this many images (a fixed sample by SHA-256, across splits).', min: 1}),
    original: Flags.boolean({description: 'Export the original image bytes instead of the normalized derivatives (with all their metadata, GPS included, and EXIF orientation; width and height are the stored pixels\', before orientation).'}),
    captions: Flags.string({description: 'Captions per image: all of them, or the first by caption_id.', options: ['all', 'first'], default: 'all'}),
    'shard-size': Flags.integer({description: 'Images per shard (hf, webdataset).', default: DEFAULT_SHARD_SIZE, min: 1}),
    overwrite: Flags.boolean({description: 'Replace an earlier mlcap export in --out once the new one is complete.'}),
    'verify-images': Flags.boolean({
      description: 'Hash every image and check it against the SHA-256 the lake names it by (catches a damaged object of the right size; ~25% more CPU). Without it, each object\'s size is checked.',
    }),
  }

  async run(): Promise<ExportGoldSummary & {seconds: number}> {
    const started = Date.now()
    const progress = new Progress(this.interactive, 'export')
    const interrupt = interruptSignal(() => this.note('\nStopping: removing the unfinished export (Ctrl-C again to quit at once)…'))
    let summary: ExportGoldSummary
    try {
      summary = await exportGold(this.layout, {
        format: this.flags.format as ExportFormat,
        outDir: this.flags.out,
        split: this.flags.split as ExportSplit,
        where: this.flags.where,
        limit: this.flags.limit,
        original: this.flags.original,
        captions: this.flags.captions as 'all' | 'first',
        shardSize: this.flags['shard-size'],
        overwrite: this.flags.overwrite,
        verifyImages: this.flags['verify-images'],
        signal: interrupt.signal,
        onProgress: (done, total) => progress.update(done, total, {unit: 'images'}),
      })
    } finally {
      progress.stop()
      interrupt.dispose()
    }
    const seconds = (Date.now() - started) / 1000
    if (!this.jsonEnabled()) {
      const s = summary
      const splits = Object.entries(s.counts.splits)
        .filter(([, n]) => n.samples > 0)
        .map(([split, n]) => `${split} ${n.samples}`)
        .join(', ')
      this.log(
        `${s.replaced ? 'Replaced' : 'Wrote'} ${s.outDir}: ${s.format}, ${s.counts.samples} images and ${s.counts.captions} captions (${splits}) ` +
          `from lake commit ${s.commitId}; ${s.files} files, ${formatBytes(s.bytes)} in ${seconds.toFixed(1)} s.`,
      )
      this.log(`Check it any time with: mlcap export verify ${s.outDir}`)
    }
    return {...summary, seconds}
  }
}
