import {randomBytes} from 'node:crypto'
import {existsSync, mkdirSync, utimesSync} from 'node:fs'
import {readFile, rename, unlink, writeFile} from 'node:fs/promises'
import path from 'node:path'

import {LakeLayout} from './layout.js'

/** How a damaged object is repaired (see putObject): the commands, for the hints of errors that find one. */
export const REPAIR_ORIGINAL = 'ingesting its file again (mlcap ingest <file> --rehash)'
export const REPAIR_DERIVATIVE = 'mlcap etl run silver --full (same settings)'
/** The hint for a damaged object that may be either an original or a derivative. */
export const REPAIR_EITHER = `Repair it, then export again: an original by ${REPAIR_ORIGINAL}, a silver derivative with ${REPAIR_DERIVATIVE}`

/**
 * Writes bytes into the content-addressed object store. Objects are immutable: the file
 * is written under a temporary name and renamed into place, so a reader (or a process
 * killed mid-write) never sees a partial object, and two writers of the same content
 * both end with the same complete file. Returns false when the object already existed
 * with these bytes (its modification time is then refreshed, see below). An existing
 * object whose bytes differ (bit rot, a tool that rewrote it) is replaced the same atomic
 * way: re-ingesting an original (`--rehash`) or rebuilding a derivative (`etl run silver
 * --full`) is how a damaged object is repaired. The check costs one read of a file the
 * caller already holds in memory, and only when the content was stored before.
 */
export async function putObject(layout: LakeLayout, sha256: string, bytes: Uint8Array): Promise<boolean> {
  const target = layout.objectPath(sha256)
  if (existsSync(target)) {
    // The object may be debris of a run killed before its commit, old enough for gc to take.
    // Make it young again: gc keeps objects younger than its minimum age, so it cannot
    // remove it between now and the commit that will reference it.
    let present = true
    try {
      const now = new Date()
      utimesSync(target, now, now)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'ENOENT') present = false // gc removed it just now: write it again below
      else if (code !== 'EPERM' && code !== 'EACCES') throw error // EPERM/EACCES: another user's object, cannot refresh it
    }
    if (present && (await holds(target, bytes))) return false
  }
  const dir = path.dirname(target)
  ensureObjectDir(dir)
  const temporary = path.join(dir, `.tmp-${sha256.slice(0, 12)}-${randomBytes(6).toString('hex')}`)
  try {
    try {
      await writeFile(temporary, bytes)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
      // The folder was removed after this process made it (someone deleted objects/): make it again.
      mkdirSync(dir, {recursive: true})
      await writeFile(temporary, bytes)
    }
    await rename(temporary, target)
  } catch (error) {
    await unlink(temporary).catch(() => undefined)
    throw error
  }
  return true
}

/**
 * Object folders (`objects/ab`, 256 per lake) this process has made or found. `mkdirSync` per
 * object cost ingest ~0.1 ms of main-thread time each with a cold cache (~200 ms per 2,000
 * photos); each folder is made once now. gc removes objects, never their folders.
 */
const objectDirs = new Set<string>()

function ensureObjectDir(dir: string): void {
  if (objectDirs.has(dir)) return
  mkdirSync(dir, {recursive: true})
  objectDirs.add(dir)
}

/** True when `file` holds exactly `bytes` (false when it is missing or unreadable: it is then rewritten). */
async function holds(file: string, bytes: Uint8Array): Promise<boolean> {
  try {
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).equals(await readFile(file))
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'EACCES') return false
    throw error
  }
}
