import {test} from 'node:test'
import assert from 'node:assert/strict'
import {mkdir, mkdtemp, realpath, rm, symlink, writeFile, chmod, access} from 'node:fs/promises'
import {constants as fsConstants, mkdirSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {spawnSync} from 'node:child_process'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {walkInputs, type WalkEntry} from '../../src/lake/walk.js'
import {MlcapError} from '../../src/lake/errors.js'

const HERE = path.dirname(fileURLToPath(import.meta.url))

async function collect(roots: string[], opts?: Parameters<typeof walkInputs>[1]): Promise<WalkEntry[]> {
  const out: WalkEntry[] = []
  for await (const e of walkInputs(roots, opts)) out.push(e)
  return out
}

async function withTree(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await realpath(await mkdtemp(path.join(os.tmpdir(), 'mlcap-walk-')))
  try {
    await fn(dir)
  } finally {
    await rm(dir, {recursive: true, force: true})
  }
}

async function put(file: string, text = 'x'): Promise<void> {
  await mkdir(path.dirname(file), {recursive: true})
  await writeFile(file, text)
}

function summary(entries: WalkEntry[]): string[] {
  return entries.map((e) => (e.kind === 'file' ? `file ${e.relPath}` : e.kind === 'skipped' ? `skipped ${path.basename(e.path)} (${e.why})` : `reject ${path.basename(e.path)} ${e.reason}`))
}

test('walk: depth-first in sorted (code unit) order, with relPath, size and mtime', async () => {
  await withTree(async (dir) => {
    // Created in scrambled order; names chosen so that locale order would differ (B < a, é after z).
    for (const rel of ['z.jpg', 'a/2.png', 'B.jpg', 'a/1.jpg', 'a/sub/deep.jpg', 'é.jpg', 'a.txt', 'a-b/c.jpg']) await put(path.join(dir, rel), rel)
    const entries = await collect([dir])
    assert.deepEqual(summary(entries), [
      'file B.jpg',
      'file a/1.jpg',
      'file a/2.png',
      'file a/sub/deep.jpg',
      'file a-b/c.jpg',
      'file a.txt',
      'file z.jpg',
      'file é.jpg',
    ])
    const first = entries[0]
    assert.equal(first.kind, 'file')
    if (first.kind !== 'file') return
    assert.equal(first.path, path.join(dir, 'B.jpg'))
    assert.equal(first.root, dir)
    assert.equal(first.size, 'B.jpg'.length)
    assert.ok(first.mtimeMs > 0)
    // Same result every time, and with a different stat concurrency.
    assert.deepEqual(await collect([dir], {statConcurrency: 1}), entries)
    assert.deepEqual(await collect([dir]), entries)
  })
})

test('walk: hidden files and folders are skipped (and reported), unless asked for', async () => {
  await withTree(async (dir) => {
    await put(path.join(dir, '.DS_Store'))
    await put(path.join(dir, '.git/objects/aa'))
    await put(path.join(dir, 'photos/.thumb.jpg'))
    await put(path.join(dir, 'photos/a.jpg'))
    assert.deepEqual(summary(await collect([dir])), ['skipped .DS_Store (hidden)', 'skipped .git (hidden)', 'skipped .thumb.jpg (hidden)', 'file photos/a.jpg'])
    assert.deepEqual(summary(await collect([dir], {includeHidden: true})), ['file .DS_Store', 'file .git/objects/aa', 'file photos/.thumb.jpg', 'file photos/a.jpg'])
    // A hidden folder named explicitly is walked.
    assert.deepEqual(summary(await collect([path.join(dir, '.git')])), ['file objects/aa'])
  })
})

test('walk: a root may be a single file; nested and repeated roots are listed once', async () => {
  await withTree(async (dir) => {
    await put(path.join(dir, 'in/a.jpg'))
    await put(path.join(dir, 'in/sub/b.jpg'))
    await put(path.join(dir, 'single.png'))
    const entries = await collect([path.join(dir, 'single.png'), path.join(dir, 'in'), path.join(dir, 'in/sub'), path.join(dir, 'in')])
    assert.deepEqual(summary(entries), ['file single.png', 'file a.jpg', 'file sub/b.jpg'])
    const single = entries[0]
    assert.ok(single.kind === 'file' && single.root === dir && single.path === path.join(dir, 'single.png'))
    const nested = entries[2]
    assert.ok(nested.kind === 'file' && nested.root === path.join(dir, 'in'))
  })
})

test('walk: a missing root is a usage error raised before anything is yielded', async () => {
  await withTree(async (dir) => {
    await put(path.join(dir, 'a.jpg'))
    const seen: WalkEntry[] = []
    await assert.rejects(
      (async () => {
        for await (const e of walkInputs([dir, path.join(dir, 'nope')])) seen.push(e)
      })(),
      (error: unknown) => {
        assert.ok(error instanceof MlcapError)
        assert.equal(error.code, 'INPUT_NOT_FOUND')
        assert.match(error.message, /^ingest: input ".*nope" does not exist/)
        return true
      },
    )
    assert.equal(seen.length, 0)
  })
})

test('walk: symlinks inside the roots are followed; outside, looping and dangling ones are rejected', async () => {
  await withTree(async (dir) => {
    const root = path.join(dir, 'root')
    const other = path.join(dir, 'other')
    await put(path.join(root, 'real/img.jpg'))
    await put(path.join(other, 'secret.jpg'))
    await symlink(path.join(root, 'real/img.jpg'), path.join(root, 'link-in.jpg')) // file inside: followed
    await symlink('real', path.join(root, 'link-dir')) // folder inside: followed once
    await symlink('real', path.join(root, 'link-dir2')) // second link to the same folder
    await symlink(path.join(other, 'secret.jpg'), path.join(root, 'link-out.jpg'))
    await symlink(other, path.join(root, 'link-out-dir'))
    await symlink('..', path.join(root, 'real/up')) // cycle
    await symlink('.', path.join(root, 'self')) // cycle
    await symlink('loop-b', path.join(root, 'loop-a')) // ELOOP
    await symlink('loop-a', path.join(root, 'loop-b'))
    await symlink('gone.jpg', path.join(root, 'dangling.jpg'))

    const entries = await collect([root])
    assert.deepEqual(summary(entries), [
      'reject dangling.jpg symlink_broken',
      'file link-dir/img.jpg',
      'reject up symlink_loop',
      'skipped link-dir2 (already_walked)',
      'file link-in.jpg',
      'reject link-out-dir symlink_outside_root',
      'reject link-out.jpg symlink_outside_root',
      'reject loop-a symlink_loop',
      'reject loop-b symlink_loop',
      'file real/img.jpg',
      'reject up symlink_loop',
      'reject self symlink_loop',
    ])
    const viaLink = entries.find((e) => e.kind === 'file' && e.relPath === 'link-in.jpg')
    assert.ok(viaLink?.kind === 'file' && viaLink.path === path.join(root, 'real/img.jpg'), 'path is the real path, relPath the link')
    const out = entries.find((e) => e.kind === 'reject' && e.path.endsWith('link-out.jpg'))
    assert.ok(out?.kind === 'reject')
    assert.match(out.message, /^ingest: symbolic link .*link-out\.jpg points to .*other\/secret\.jpg, outside the inputs/)

    // Given as a second root, the outside folder makes those links legitimate.
    const both = summary(await collect([root, other]))
    assert.ok(both.includes('file link-out.jpg'))
    assert.ok(both.includes('file link-out-dir/secret.jpg'))
  })
})

/**
 * As root, chmod 000 does not deny reading. Then the walk runs in a child process as
 * `nobody` (via setpriv) when that is possible, and the case is skipped honestly if not.
 */
async function walkAsUnprivileged(dir: string): Promise<WalkEntry[] | string> {
  const script = `import {walkInputs} from ${JSON.stringify(pathToFileURL(path.resolve(HERE, '../../src/lake/walk.ts')).href)}
const out = []
for await (const e of walkInputs([${JSON.stringify(dir)}])) out.push(e)
process.stdout.write(JSON.stringify(out))`
  const child = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: path.resolve(HERE, '../..'),
    encoding: 'utf8',
    timeout: 60_000,
  })
  if (child.error || child.status !== 0) return `could not run the walk as uid 65534 (${child.error?.message ?? child.stderr.trim().split('\n').pop()})`
  return JSON.parse(child.stdout) as WalkEntry[]
}

test('walk: unreadable folders and files are rejected, the rest is listed', async (t) => {
  await withTree(async (dir) => {
    await put(path.join(dir, 'locked/inside.jpg'))
    await put(path.join(dir, 'closed.jpg'))
    await put(path.join(dir, 'open.jpg'))
    await chmod(dir, 0o755)
    await chmod(path.join(dir, 'locked'), 0o000)
    await chmod(path.join(dir, 'closed.jpg'), 0o000)
    try {
      const readable = await access(path.join(dir, 'closed.jpg'), fsConstants.R_OK).then(() => true, () => false)
      let entries: WalkEntry[]
      if (!readable) entries = await collect([dir])
      else {
        const result = await walkAsUnprivileged(dir)
        if (typeof result === 'string') {
          t.skip(`running with CAP_DAC_OVERRIDE (root), so chmod 000 does not deny reading, and ${result}`)
          return
        }
        t.diagnostic('running as root: walked as uid 65534 in a child process')
        entries = result
      }
      assert.deepEqual(summary(entries), ['reject closed.jpg unreadable', 'reject locked unreadable', 'file open.jpg'])
      const locked = entries[1]
      assert.ok(locked.kind === 'reject')
      assert.match(locked.message, /^ingest: cannot read folder .*locked: EACCES/)
    } finally {
      await chmod(path.join(dir, 'locked'), 0o755)
      await chmod(path.join(dir, 'closed.jpg'), 0o644)
    }
  })
})

test('walk: a file or folder whose name is not UTF-8 is rejected as name_not_utf8, naming its bytes; the rest is listed', async () => {
  await withTree(async (dir) => {
    await put(path.join(dir, 'ok.jpg'))
    await put(path.join(dir, 'caf\u00e9.jpg')) // UTF-8 é: fine
    // Latin-1 names, as an old archive or a Windows share would have them: raw bytes.
    writeFileSync(Buffer.concat([Buffer.from(dir + '/caf'), Buffer.from([0xe9]), Buffer.from('.jpg')]), 'x')
    const folder = Buffer.concat([Buffer.from(dir + '/d'), Buffer.from([0xfc]), Buffer.from('r')])
    mkdirSync(folder)
    writeFileSync(Buffer.concat([folder, Buffer.from('/inside.jpg')]), 'x')

    const entries = await collect([dir])
    assert.deepEqual(summary(entries), ['file caf\u00e9.jpg', 'reject caf\ufffd.jpg name_not_utf8', 'reject d\ufffdr name_not_utf8', 'file ok.jpg'])
    const [file, sub] = entries.filter((e) => e.kind === 'reject') as Array<Extract<WalkEntry, {kind: 'reject'}>>
    assert.match(file.message, /the name of the file "caf\\xe9\.jpg" in .* is not valid UTF-8/)
    assert.match(file.message, /convmv -f latin1 -t utf8/)
    assert.match(sub.message, /the name of the folder "d\\xfcr" .*nothing in it was read/)
  })
})

test('walk: streams — the first entry arrives before a large tree is listed', async () => {
  await withTree(async (dir) => {
    for (let d = 0; d < 20; d++) {
      await mkdir(path.join(dir, `d${String(d).padStart(2, '0')}`))
      await Promise.all(Array.from({length: 25}, (_, f) => writeFile(path.join(dir, `d${String(d).padStart(2, '0')}`, `f${f}.jpg`), '')))
    }
    // Stop after the first entry: only the first folder's stats may have been done.
    let first: WalkEntry | undefined
    for await (const e of walkInputs([dir])) {
      first = e
      break
    }
    assert.ok(first?.kind === 'file' && first.relPath === 'd00/f0.jpg')
    let count = 0
    for await (const e of walkInputs([dir])) if (e.kind === 'file') count++
    assert.equal(count, 500)
  })
})
