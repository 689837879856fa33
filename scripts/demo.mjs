#!/usr/bin/env node
// The Quick start's main job on the bundled samples: ingest data/samples into ./data/lake,
// run the silver and gold stages, show the lake's status, run queries, and export gold as a
// Hugging Face dataset into ./data/export/hf, checked against its manifest. Uses the built CLI
// (npm install builds it). Re-running it adds nothing to the lake and replaces the export.
import {spawnSync} from 'node:child_process'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const cli = path.join(root, 'bin', 'run.js')
const lake = path.join(root, 'data', 'lake')
const exported = path.join(root, 'data', 'export', 'hf')

function mlcap(...args) {
  console.log(`\n$ mlcap ${args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' ')}`)
  const withLake = args[0] === 'export' && args[1] === 'verify' ? args : [...args, '--lake', lake]
  const result = spawnSync(process.execPath, [cli, ...withLake], {stdio: 'inherit', cwd: root})
  if (result.status !== 0) {
    console.error(`demo: "mlcap ${args[0]}" exited with ${result.status}`)
    process.exit(result.status ?? 1)
  }
}

mlcap('ingest', path.join(root, 'data', 'samples'))
mlcap('etl', 'run', 'all')
mlcap('status')
mlcap(
  'query',
  `select i.format, i.width, i.height, c.source_kind, c.text
     from bronze.images i join bronze.captions c using (sha256)
    order by c.source_kind, c.text limit 12`,
)
mlcap('query', `select split, count(*) as pairs, count(distinct group_id) as groups from gold.pairs group by all order by split`)
mlcap('export', '--format', 'hf', '--out', exported, '--overwrite')
mlcap('export', 'verify', exported)
