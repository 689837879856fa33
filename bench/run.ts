/**
 * npm run bench [-- NAME ...]: runs the benchmarks in bench/ (all, or the ones named), each
 * comparing mlcap with a baseline tool in the same run and printing the ratio. Not part of
 * CI's timing. Needs `npm run build` first and, for baselines, Debian packages:
 * `apt-get install libvips-tools python3-pil python3-numpy` (vipsthumbnail, Pillow).
 */
import {readdirSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const available = readdirSync(here)
  .filter((f) => f.endsWith('.ts') && !['run.ts', 'lib.ts'].includes(f))
  .map((f) => f.replace(/\.ts$/, ''))
  .sort()
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'))
const names = wanted.length ? wanted : available
for (const name of names) {
  if (!available.includes(name)) {
    console.error(`bench: unknown benchmark ${JSON.stringify(name)}; available: ${available.join(', ')}`)
    process.exit(2)
  }
}
for (const name of names) {
  console.log(`\n=== bench/${name}`)
  const module = (await import(`./${name}.js`)) as {main: (args: string[]) => Promise<void>}
  await module.main([])
}
