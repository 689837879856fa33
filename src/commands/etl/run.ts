import {Args, Flags} from '@oclif/core'

import {LakeCommand} from '../../cli/lakeCommand.js'
import {modelFlags, modelOptions} from '../../cli/modelFlags.js'
import {interruptSignal, Progress} from '../../cli/progress.js'
import {EXIT, invalidParameter} from '../../lake/errors.js'
import {DEFAULT_MAX_CAPTION_LENGTH} from '../../lake/captionClean.js'
import {DEFAULT_GOLD_FILTERS} from '../../lake/gold.js'
import {DEFAULT_NORMALIZE_OPTIONS} from '../../lake/normalize.js'
import {DEFAULT_NEAR_DUPLICATE_DISTANCE} from '../../lake/perceptualHash.js'
import {DEFAULT_SPLIT_SEED, parseSplitRatios} from '../../lake/split.js'
import {StageSummary} from '../../lake/stageRun.js'
import {resolveStages, STAGES} from '../../lake/stages.js'

export default class EtlRun extends LakeCommand<typeof EtlRun> {
  static override summary = 'Run ETL stages: silver, caption, gold, or all (= silver + gold).'

  static override description = `Each stage processes only what is new since its last run, decided by keys (content hash, caption id), never by time: re-running does nothing. Changed parameters apply to new rows; --full rebuilds the named stages from scratch. A run killed at any moment resumes with no gaps and no duplicates. Every run is recorded in lake.runs (see: mlcap etl history).

silver: decodes each new image once (EXIF orientation, sRGB, alpha flattened, first frame), writes a normalized JPEG (longer side ≤ --max-side, never upscaled, metadata stripped) and records perceptual hashes and quality measures; cleans every new caption.
caption: captions every ok silver image that has no caption from the chosen model with the same settings (model, weights hash, dtype, generation) into silver.captions (source 'model', with that provenance). Not part of \`all\`: it runs only when named (\`etl run silver caption gold\` runs the three in order). The model comes from the local model cache (\`mlcap models pull\`) or a folder (--model); it is never downloaded here. A failed or empty generation is recorded as a rejected row, never a caption, and is not retried with the same settings unless --retry-failed. Commits every --batch-size captions and at least every 30 s, so a killed run loses at most that; Ctrl-C stops feeding the model, commits what is complete and closes the workers.
gold: pairs ok images with ok captions, applies the quality filters, groups near-duplicates (pHash Hamming distance ≤ --near-dup-distance) and assigns train/val/test from a stable hash of the group, so a group never straddles splits.`

  static override examples = [
    '<%= config.bin %> etl run silver',
    '<%= config.bin %> etl run all',
    '<%= config.bin %> etl run silver gold --split 80/10/10 --dedupe',
    '<%= config.bin %> etl run silver --full --max-side 384',
    '<%= config.bin %> etl run all --json',
    '<%= config.bin %> etl run caption',
    '<%= config.bin %> etl run silver caption gold --max-new-tokens 30',
    '<%= config.bin %> etl run caption --model ./models/my-captioner --workers 2 --threads-per-worker 1',
    '<%= config.bin %> etl run caption --retry-failed --model-cache /shared/models',
  ]

  static override strict = false

  static override args = {
    stages: Args.string({description: `stages to run, in order: ${Object.keys(STAGES).join(', ')}, all`, required: true}),
  }

  static override flags = {
    full: Flags.boolean({description: 'Rebuild silver and gold from all their input (the caption stage never recaptions: use --retry-failed or new model settings).'}),
    'batch-size': Flags.integer({description: 'Rows per commit (bounds what a kill can lose).', default: 1000, min: 1}),
    'max-side': Flags.integer({description: 'silver: longer side of the normalized image.', default: DEFAULT_NORMALIZE_OPTIONS.maxSide, min: 16, helpGroup: 'SILVER'}),
    quality: Flags.integer({description: 'silver: JPEG/WebP quality of the derivative.', default: DEFAULT_NORMALIZE_OPTIONS.quality, min: 1, max: 100, helpGroup: 'SILVER'}),
    'image-format': Flags.string({description: 'silver: derivative format.', options: ['jpeg', 'webp', 'png'], default: DEFAULT_NORMALIZE_OPTIONS.format, helpGroup: 'SILVER'}),
    'min-side': Flags.integer({description: 'silver: reject images whose shorter side is below this.', default: DEFAULT_NORMALIZE_OPTIONS.minSide, min: 1, helpGroup: 'SILVER'}),
    'max-aspect': Flags.string({description: 'silver: reject images more elongated than this ratio.', default: String(DEFAULT_NORMALIZE_OPTIONS.maxAspectRatio), helpGroup: 'SILVER'}),
    lowercase: Flags.boolean({description: 'silver: lowercase cleaned captions.', helpGroup: 'SILVER'}),
    'max-caption-length': Flags.integer({description: 'silver: reject captions longer than this (characters).', default: DEFAULT_MAX_CAPTION_LENGTH, min: 1, helpGroup: 'SILVER'}),
    split: Flags.string({description: 'gold: train/val/test percentages.', default: '90/5/5', helpGroup: 'GOLD'}),
    'split-seed': Flags.string({description: 'gold: seed of the split hash (changes every assignment).', default: DEFAULT_SPLIT_SEED, helpGroup: 'GOLD'}),
    'near-dup-distance': Flags.integer({description: 'gold: pHash Hamming distance for near-duplicates.', default: DEFAULT_NEAR_DUPLICATE_DISTANCE, min: 0, max: 64, helpGroup: 'GOLD'}),
    dedupe: Flags.boolean({description: 'gold: keep one image of each near-duplicate group: of those that pass the filters, the largest original (most pixels, then the largest file, then the sharpest).', helpGroup: 'GOLD'}),
    'gold-min-side': Flags.integer({description: 'gold: minimum shorter side of the normalized image.', default: DEFAULT_GOLD_FILTERS.minSide, min: 0, helpGroup: 'GOLD'}),
    'min-sharpness': Flags.string({description: 'gold: minimum variance of the Laplacian.', default: String(DEFAULT_GOLD_FILTERS.minSharpness), helpGroup: 'GOLD'}),
    'min-words': Flags.integer({description: 'gold: minimum caption words.', default: DEFAULT_GOLD_FILTERS.minWords, min: 0, helpGroup: 'GOLD'}),
    'max-words': Flags.integer({description: 'gold: maximum caption words.', default: DEFAULT_GOLD_FILTERS.maxWords, min: 1, helpGroup: 'GOLD'}),
    ...modelFlags('CAPTION'),
    'retry-failed': Flags.boolean({description: 'caption: caption again the images whose earlier attempt with the same settings was rejected.', helpGroup: 'CAPTION'}),
  }

  async run(): Promise<{stages: StageSummary[]}> {
    const names = resolveStages(this.positionals)
    // Checked before any run starts (a bad value used to fail the first image, or silently filter nothing).
    const maxAspect = numberFlag('--max-aspect', this.flags['max-aspect'], 1)
    const minSharpness = numberFlag('--min-sharpness', this.flags['min-sharpness'], 0)
    const ratios = parseSplitRatios(this.flags.split)
    const interrupt = interruptSignal(() => this.note('\nStopping: committing what is complete (Ctrl-C again to quit at once)…'))
    const summaries: StageSummary[] = []
    let skipped = false
    try {
      for (const name of names) {
        if (interrupt.signal.aborted) {
          skipped = true
          break
        }
        const progress = new Progress(this.interactive, name.padEnd(7))
        try {
          const summary = await STAGES[name].run(this.layout, {
            signal: interrupt.signal,
            batchSize: this.flags['batch-size'],
            full: this.flags.full,
            onProgress: (done, total) => progress.update(done, total, {unit: 'items'}),
            silver: {
              normalize: {
                maxSide: this.flags['max-side'],
                quality: this.flags.quality,
                format: this.flags['image-format'] as 'jpeg' | 'webp' | 'png',
                minSide: this.flags['min-side'],
                maxAspectRatio: maxAspect,
              },
              captions: {lowercase: this.flags.lowercase ?? false, maxLength: this.flags['max-caption-length']},
            },
            caption: {...modelOptions(this.flags), retryFailed: this.flags['retry-failed']},
            gold: {
              ratios,
              splitSeed: this.flags['split-seed'],
              nearDuplicateDistance: this.flags['near-dup-distance'],
              dedupe: this.flags.dedupe,
              filters: {
                minSide: this.flags['gold-min-side'],
                minSharpness,
                minWords: this.flags['min-words'],
                maxWords: this.flags['max-words'],
              },
            },
          })
          summaries.push(summary)
          this.printSummary(summary)
          this.noteWarnings(summary.warnings)
        } finally {
          progress.stop()
        }
      }
    } finally {
      interrupt.dispose()
    }
    // Non-zero so `mlcap etl run all && mlcap export …` does not export a half-built gold.
    if (skipped || summaries.some((s) => s.status === 'interrupted')) process.exitCode = EXIT.interrupted
    return {stages: summaries}
  }

  private printSummary(s: StageSummary): void {
    if (this.jsonEnabled()) return
    const added = Object.entries(s.added)
      .filter(([, n]) => n > 0)
      .map(([t, n]) => `${t} +${n}`)
      .join(', ')
    const rejects = Object.entries(s.rejects)
      .map(([r, n]) => `${r} ${n}`)
      .join(', ')
    if (typeof s.params.rebuilt_because === 'string') this.log(`${s.stage}: rebuilt from scratch: ${s.params.rebuilt_because}.`)
    if (s.status === 'nothing_to_do') {
      this.log(`${s.stage}: nothing new to process.`)
      return
    }
    this.log(
      `${s.stage}: ${s.status === 'interrupted' ? 'interrupted after ' : ''}${s.rowsIn} items in ${s.seconds.toFixed(1)} s` +
        (added ? ` → ${added}` : '') +
        (rejects ? `; rejected/excluded: ${rejects}` : '') +
        (s.commits.length ? ` (commit ${s.commits.join(', ')})` : ''),
    )
  }
}

/** A number flag given as text (so decimals are allowed): finite and at least `min`, or a usage error naming the flag. */
function numberFlag(name: string, text: string, min: number): number {
  const value = Number(text)
  if (text.trim() === '' || !Number.isFinite(value) || value < min) throw invalidParameter(name, `number ≥ ${min}`, text)
  return value
}
