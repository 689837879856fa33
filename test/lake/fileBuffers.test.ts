import {test} from 'node:test'
import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import {mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {FileBuffers} from '../../src/lake/fileBuffers.js'
import {tempDir} from '../helpers/lakeFixtures.js'

test('FileBuffers reads whole files of any size, reuses a buffer only once it is released, and fails as readFile does', async (t) => {
  const {dir, cleanup} = tempDir('mlcap-filebuffers-')
  t.after(cleanup)
  const files = new FileBuffers()
  const sizes = [0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 17]
  for (const size of sizes) {
    const content = randomBytes(size)
    const file = path.join(dir, `f${size}`)
    writeFileSync(file, content)
    const {bytes, release} = await files.read(file)
    assert.ok(bytes.equals(content), `${size} bytes read back`)
    release()
  }

  // Released: the next file reads into the same memory. Not released: it does not.
  const fresh = new FileBuffers()
  writeFileSync(path.join(dir, 'a'), 'first file')
  writeFileSync(path.join(dir, 'b'), 'second')
  const a = await fresh.read(path.join(dir, 'a'))
  const b = await fresh.read(path.join(dir, 'b'))
  assert.ok(a.bytes.buffer !== b.bytes.buffer, 'two files in flight never share a buffer')
  assert.equal(a.bytes.toString(), 'first file')
  a.release()
  const c = await fresh.read(path.join(dir, 'b'))
  assert.ok(c.bytes.buffer === a.bytes.buffer, 'a released buffer is reused')
  assert.equal(c.bytes.toString(), 'second')
  b.release()
  c.release()

  await assert.rejects(files.read(path.join(dir, 'missing')), {code: 'ENOENT'})
  mkdirSync(path.join(dir, 'folder'))
  await assert.rejects(files.read(path.join(dir, 'folder')), {code: 'EISDIR'})
})
