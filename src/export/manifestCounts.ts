/**
 * The manifest's counts, checked against the manifest itself. `export verify` prints them,
 * so it must not take them on trust: the splits must add up to the totals, the captions
 * must fit the caption mode (one per sample with captions=first, at least one with all),
 * and the files the manifest lists must agree with them wherever a format's layout shows
 * samples in file names. verifyExport separately proves the listed files are on disk.
 *
 * The layouts below repeat what the writers (hf.ts, imagefolder.ts, …) produce; the tests
 * that verify a fresh export of every format keep the two in step. Caption counts, and the
 * sample counts inside hf and webdataset shards, would need the files' contents parsed:
 * they are not checked. A format this version does not know gets the arithmetic only.
 */
import type {ExportManifest} from './manifest.js'
import {SPLITS, type Split} from './sample.js'

const SPLIT = `(${SPLITS.join('|')})`

/**
 * Per format, which listed paths stand for samples: one `image` file per sample, or one
 * `shard` per 1..N samples. With `perSplit`, the pattern's first group is the split;
 * without (jsonl, csv: one folder for all splits) the files count toward the total.
 */
const LAYOUTS: Record<string, {unit: 'image' | 'shard'; perSplit: boolean; pattern: RegExp}> = {
  hf: {unit: 'shard', perSplit: true, pattern: new RegExp(`^${SPLIT}/\\1-\\d{5,}-of-\\d{5,}\\.parquet$`)},
  imagefolder: {unit: 'image', perSplit: true, pattern: new RegExp(`^${SPLIT}/(?!metadata\\.jsonl$)[^/]+$`)},
  webdataset: {unit: 'shard', perSplit: true, pattern: new RegExp(`^${SPLIT}/\\d{5,}\\.tar$`)},
  coco: {unit: 'image', perSplit: true, pattern: new RegExp(`^${SPLIT}/images/[^/]+$`)},
  jsonl: {unit: 'image', perSplit: false, pattern: /^images\/[^/]+$/},
  csv: {unit: 'image', perSplit: false, pattern: /^images\/[^/]+$/},
}

/** One message per count of `manifest` that disagrees with another count or with its listed files. */
export function countMismatches(manifest: ExportManifest): string[] {
  const {counts} = manifest
  const problems: string[] = []
  for (const field of ['samples', 'captions'] as const) {
    const sum = SPLITS.reduce((total, split) => total + counts.splits[split][field], 0)
    if (sum !== counts[field]) problems.push(`counts.${field} is ${counts[field]} but the splits add up to ${sum}`)
  }
  const first = manifest.options.captions === 'first'
  for (const split of SPLITS) {
    const {samples, captions} = counts.splits[split]
    if (first ? captions !== samples : captions < samples) {
      problems.push(`counts.splits.${split}.captions is ${captions} for ${samples} samples; expected ${first ? 'one caption' : 'at least one caption'} per sample (captions: ${String(manifest.options.captions)})`)
    }
  }

  if (!Object.hasOwn(LAYOUTS, manifest.format)) return problems
  const layout = LAYOUTS[manifest.format]
  const found = new Map<Split | undefined, number>()
  // distinct paths: a path listed twice is one file on disk (verify reports it as a duplicate)
  for (const path of new Set(manifest.files.map((file) => file.path))) {
    const match = layout.pattern.exec(path)
    if (match === null) continue
    const split = match[1] as Split | undefined
    found.set(split, (found.get(split) ?? 0) + 1)
  }
  const groups: Array<[Split | undefined, number, string, string]> = layout.perSplit
    ? SPLITS.map((split) => [split, counts.splits[split].samples, `counts.splits.${split}.samples`, `${split}/`])
    : [[undefined, counts.samples, 'counts.samples', 'the export']]
  for (const [split, samples, field, where] of groups) {
    const files = found.get(split) ?? 0
    if (layout.unit === 'image' && files !== samples) {
      problems.push(`${field} is ${samples} but the manifest lists ${files} image file(s) in ${where}; expected one per sample`)
    } else if (layout.unit === 'shard' && (samples === 0 ? files > 0 : files === 0 || files > samples)) {
      problems.push(`${field} is ${samples} but the manifest lists ${files} shard(s) in ${where}; expected ${samples === 0 ? 'none' : `1 to ${samples} (each holds at least one sample)`}`)
    }
  }
  return problems
}
