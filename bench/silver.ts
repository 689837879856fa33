/**
 * bench/silver — `mlcap etl run silver` (normalization only: no captions in the lake)
 * against libvips's own CLI (`vipsthumbnail`, driven in parallel over the same cores: the
 * floor for the same resize) and a Python Pillow script doing the same work
 * (pillow_normalize.py: the same resize and encode, and the same measures and hashes silver
 * records). Pillow runs four ways: one process, as such scripts are usually written, and a
 * process pool over every core; each decoding every image at full size, and with Pillow's
 * JPEG draft mode (the shrink-on-load libvips does for mlcap). Same photos (1–4 MP, one in
 * ten with EXIF orientation 6), same run. Also the floor inside Node (sharpFloor.mjs: decode,
 * resize and encode only, through the same sharp), which bounds what mlcap can reach with
 * this decoder. Medians of --rounds rounds (each contender once per round).
 *
 *   npx tsx bench/silver.ts [--count 1000] [--min-mp 1 --max-mp 4] [--rounds 3]
 *   (12 MP phone photos: --min-mp 8 --max-mp 12)
 */
import {spawnSync} from 'node:child_process'
import {readdirSync} from 'node:fs'
import path from 'node:path'

import {freshDir, makePhotos, median, report, requireTool, ROOT, timeCommand, timeMlcap, WORK} from './lib.js'

export async function main(args: string[] = process.argv.slice(2)): Promise<void> {
  const flag = (name: string, fallback: number) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : fallback)
  const count = flag('--count', 1000)
  const minMp = flag('--min-mp', 1)
  const maxMp = flag('--max-mp', 4)
  const rounds = flag('--rounds', 3)
  if (!(count > 0 && minMp > 0 && maxMp >= minMp && Number.isInteger(rounds) && rounds > 0)) {
    throw new Error('bench/silver: expected --count N (> 0), --min-mp and --max-mp in megapixels with min ≤ max, --rounds N (≥ 1)')
  }
  requireTool('vipsthumbnail', 'apt-get install libvips-tools')
  requireTool('/usr/bin/python3', 'apt-get install python3-pil python3-numpy')
  if (spawnSync('/usr/bin/python3', ['-c', 'import PIL, numpy']).status !== 0) {
    throw new Error('bench: the Pillow baseline needs Pillow and NumPy for /usr/bin/python3; install them with: apt-get install python3-pil python3-numpy')
  }
  const sizes = minMp === 1 && maxMp === 4 ? '' : `-${minMp}-${maxMp}mp`
  const photos = await makePhotos(path.join(WORK, `photos-${count}${sizes}`), count, {minMp, maxMp, rotatedEvery: 10})
  const files = readdirSync(photos).filter((f) => f.endsWith('.jpg')).map((f) => path.join(photos, f))
  console.log(`bench/silver: ${files.length} JPEGs, ${minMp}–${maxMp} MP`)

  // Every contender runs once per round, in the same order, and the report gives medians: on
  // a small shared VM one run can be 15% off, for mlcap and the baselines alike. Each ratio is
  // also given as its range over the rounds (mlcap's run against the baseline's run of the
  // same round), so a lucky or unlucky round shows.
  const pillowScript = path.join(ROOT, 'bench', 'pillow_normalize.py')
  const pillow = (label: string, short: string, flags: string[]) => ({
    label,
    short,
    target: '≥ 2× Pillow',
    run: () => timeCommand('/usr/bin/python3', [pillowScript, ...flags, freshDir('silver-pillow'), ...files]).seconds,
  })
  const contenders: Array<{label: string; short: string; note?: string; target?: string; run: () => number}> = [
    {
      label: 'mlcap etl run silver',
      short: 'mlcap',
      run: () => {
        const lake = freshDir('silver-lake')
        timeMlcap(['ingest', photos, '--lake', lake, '--json'])
        return timeMlcap(['etl', 'run', 'silver', '--lake', lake, '--json']).seconds
      },
    },
    {
      label: 'vipsthumbnail ×nproc',
      short: 'vips',
      target: '≥ 0.8×',
      run: () =>
        timeCommand('sh', [
          '-c',
          `find "${photos}" -name '*.jpg' -print0 | xargs -0 -P "$(nproc)" -n 25 vipsthumbnail --size 512x512 --export-profile srgb -o "${freshDir('silver-vips')}/%s.jpg[Q=90,strip]"`,
        ]).seconds,
    },
    {...pillow('Pillow, full decode, 1 process', 'Pillow full 1p', ['--processes', '1']), note: 'the same measures and hashes, one image after another'},
    {...pillow('Pillow, draft mode, 1 process', 'Pillow draft 1p', ['--draft', '--processes', '1']), note: 'the same, decoding JPEGs at 1/2–1/8 size'},
    {...pillow('Pillow, full decode, ×nproc', 'Pillow full pool', []), note: 'process pool over every core'},
    {...pillow('Pillow, draft mode, ×nproc', 'Pillow draft pool', ['--draft']), note: 'process pool, draft mode'},
    {
      label: 'sharp, resize+encode only',
      short: 'floor',
      note: "the floor with mlcap's decoder",
      run: () => timeCommand(process.execPath, [path.join(ROOT, 'bench', 'sharpFloor.mjs'), freshDir('silver-sharp-floor'), ...files]).seconds,
    },
  ]
  const seconds = contenders.map(() => [] as number[])
  for (let round = 1; round <= rounds; round++) {
    contenders.forEach((c, k) => seconds[k]!.push(c.run()))
    console.log(`  round ${round}/${rounds}: ${contenders.map((c, k) => `${c.short} ${seconds[k]!.at(-1)!.toFixed(1)} s`).join(', ')}`)
  }

  const rate = (s: number) => `${(files.length / s).toFixed(1)} images/s`
  const mlcap = seconds[0]!
  const ratio = (k: number) => {
    const perRound = seconds[k]!.map((s, r) => s / mlcap[r]!)
    const spread = rounds > 1 ? `, ${Math.min(...perRound).toFixed(2)}–${Math.max(...perRound).toFixed(2)}× by round` : ''
    const target = contenders[k]!.target
    return `${(median(seconds[k]!) / median(mlcap)).toFixed(2)}× its throughput${spread}${target ? ` (target ${target})` : ''}`
  }
  report(`normalize ${files.length} photos to ≤ 512 px JPEG q90, median of ${rounds} rounds`, [
    ...contenders.map((c, k): [string, string] => [c.label, `${median(seconds[k]!).toFixed(2)} s  ${rate(median(seconds[k]!))}${c.note ? `  (${c.note})` : ''}`]),
    ...contenders.slice(1).map((c, k): [string, string] => [`mlcap / ${c.label}`, ratio(k + 1)]),
  ])
  const medianOf = (short: string) => median(seconds[contenders.findIndex((c) => c.short === short)]!)
  console.log(
    `  The floor is ${(medianOf('Pillow draft pool') / medianOf('floor')).toFixed(2)}× Pillow in draft mode over every core: no decoder built on libjpeg-turbo, as both are, can reach 2× that.`,
  )
}

if (import.meta.url === `file://${process.argv[1]}`) await main()
