/**
 * Promise 3 (many processes at once) inside one process. DuckDB's lock on the catalog is a
 * POSIX record lock, owned by the process: a second use of the catalog in the same process
 * (watch commits a batch while its --then stage opens a reader) is not stopped by it, and
 * when that second use ends it drops the lock the first one still relies on. Another process
 * could then open the catalog and write it at the same time: a corrupt catalog.
 */
import {test} from 'node:test'
import assert from 'node:assert/strict'
import path from 'node:path'

import {withCatalog} from '../../src/lake/catalog.js'
import {LakeLayout} from '../../src/lake/layout.js'
import {LakeReader} from '../../src/lake/reader.js'
import {ingest} from '../../src/lake/ingest.js'
import {runCli, tempDir, writeImageFolder} from '../helpers/lakeFixtures.js'

test('while this process holds the catalog, another use in the same process waits, so other processes stay locked out', {timeout: 60_000}, async (t) => {
  const {dir, cleanup} = tempDir('mlcap-catalog-inproc-')
  t.after(cleanup)
  const layout = new LakeLayout(path.join(dir, 'lake'))
  await writeImageFolder(path.join(dir, 'in'), 2)
  await ingest(layout, [path.join(dir, 'in')])

  let reader: Promise<LakeReader> | undefined
  const other = await withCatalog(layout, async () => {
    // A reader opened meanwhile in this process (ATTACH … DETACH of the catalog)…
    reader = LakeReader.open(layout)
    await new Promise((resolve) => setTimeout(resolve, 500))
    // …must not have let another process in while this use still holds the catalog.
    return runCli(['query', 'select count(*) from bronze.images', '--lake', layout.root], {env: {MLCAP_LOCK_TIMEOUT_MS: '1000'}})
  })
  assert.equal(other.code, 3, `another process opened the catalog while this process held it (exit ${other.code}): ${other.stdout}${other.stderr}`)
  const opened = await reader!
  try {
    assert.equal(Number((await opened.connection.runAndReadAll('SELECT count(*) FROM bronze.images')).getRows()[0][0]), 2)
  } finally {
    opened.close()
  }
})
