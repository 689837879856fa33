/**
 * bench/silver — `mlcap etl run silver` (normalization only: no captions in the lake)
 * against libvips's own CLI (`vipsthumbnail`, driven in parallel over the same cores: the
 * floor for the same resize) and a Python Pillow script doing the same work with a process
 * pool (pillow_normalize.py: the same resize and encode, and the same measures and hashes
 * silver records), twice: decoding every image at full size, and with Pillow's JPEG draft
 * mode (the shrink-on-load libvips does for mlcap). Same photos (1–4 MP, one in ten with EXIF
 * orientation 6), same run. Also the floor inside Node (sharpFloor.mjs: decode, resize and
 * encode only, through the same sharp), which bounds what mlcap can reach with this decoder.
 *
 *   npx tsx bench/silver.ts [--count 1000] [--min-mp 1 --max-mp 4]   (12 MP phone photos: --min-mp 8 --max-mp 12)
 */
import {spawnSync} from 'node:child_process'
import {readdirSync} from 'node:fs'
import path from 'node:path'

import {freshDir, makePhotos, report, requireTool, ROOT, timeCommand, timeMlcap, WORK} from './lib.js'

export async function main(args: string[] = process.argv.slice(2)): Promise<void> {
  const flag = (name: string, fallback: number) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : fallback)
  const count = flag('--count', 1000)
  const minMp = flag('--min-mp', 1)
  const maxMp = flag('--max-mp', 4)
  if (!(count > 0 && minMp > 0 && maxMp >= minMp)) throw new Error('bench/silver: expected --count N (> 0), --min-mp and --max-mp in megapixels with min ≤ max')
  requireTool('vipsthumbnail', 'apt-get install libvips-tools')
  requireTool('/usr/bin/python3', 'apt-get install python3-pil python3-numpy')
  if (spawnSync('/usr/bin/python3', ['-c', 'import PIL, numpy']).status !== 0) {
    throw new Error('bench: the Pillow baseline needs Pillow and NumPy for /usr/bin/python3; install them with: apt-get install python3-pil python3-numpy')
  }
  const sizes = minMp === 1 && maxMp === 4 ? '' : `-${minMp}-${maxMp}mp`
  const photos = await makePhotos(path.join(WORK, `photos-${count}${sizes}`), count, {minMp, maxMp, rotatedEvery: 10})
  const files = readdirSync(photos).filter((f) => f.endsWith('.jpg')).map((f) => path.join(photos, f))
  console.log(`bench/silver: ${files.length} JPEGs, ${minMp}–${maxMp} MP`)

  const lake = freshDir('silver-lake')
  timeMlcap(['ingest', photos, '--lake', lake, '--json'])
  const mlcap = timeMlcap(['etl', 'run', 'silver', '--lake', lake, '--json'])

  const vipsOut = freshDir('silver-vips')
  const vips = timeCommand('sh', [
    '-c',
    `find "${photos}" -name '*.jpg' -print0 | xargs -0 -P "$(nproc)" -n 25 vipsthumbnail --size 512x512 --export-profile srgb -o "${vipsOut}/%s.jpg[Q=90,strip]"`,
  ])

  const pillowScript = path.join(ROOT, 'bench', 'pillow_normalize.py')
  const pillow = timeCommand('/usr/bin/python3', [pillowScript, freshDir('silver-pillow'), ...files])
  const pillowDraft = timeCommand('/usr/bin/python3', [pillowScript, '--draft', freshDir('silver-pillow-draft'), ...files])

  const floorOut = freshDir('silver-sharp-floor')
  const floor = timeCommand(process.execPath, [path.join(ROOT, 'bench', 'sharpFloor.mjs'), floorOut, ...files])

  const rate = (s: number) => `${(files.length / s).toFixed(1)} images/s`
  report(`normalize ${files.length} photos to ≤ 512 px JPEG q90`, [
    ['mlcap etl run silver', `${mlcap.seconds.toFixed(2)} s  ${rate(mlcap.seconds)}  peak RSS ${mlcap.maxRssMb.toFixed(0)} MB`],
    ['vipsthumbnail ×nproc', `${vips.seconds.toFixed(2)} s  ${rate(vips.seconds)}`],
    ['Pillow, full decode', `${pillow.seconds.toFixed(2)} s  ${rate(pillow.seconds)}  (process pool, same measures and hashes)`],
    ['Pillow, draft mode', `${pillowDraft.seconds.toFixed(2)} s  ${rate(pillowDraft.seconds)}  (the same, decoding JPEGs at 1/2–1/8 size)`],
    ['sharp, resize+encode only', `${floor.seconds.toFixed(2)} s  ${rate(floor.seconds)}  (the floor with mlcap's decoder)`],
    ['mlcap / vipsthumbnail', `${(vips.seconds / mlcap.seconds).toFixed(2)}× its throughput (target ≥ 0.8×)`],
    ['mlcap / Pillow full decode', `${(pillow.seconds / mlcap.seconds).toFixed(2)}× its throughput (target ≥ 2×)`],
    ['mlcap / Pillow draft mode', `${(pillowDraft.seconds / mlcap.seconds).toFixed(2)}× its throughput (target ≥ 2×)`],
    ['sharp floor / Pillow', `${(pillow.seconds / floor.seconds).toFixed(2)}× full decode, ${(pillowDraft.seconds / floor.seconds).toFixed(2)}× draft mode (the most mlcap could reach with sharp)`],
    ['mlcap / sharp floor', `${(floor.seconds / mlcap.seconds).toFixed(2)}× its throughput`],
  ])
}

if (import.meta.url === `file://${process.argv[1]}`) await main()
