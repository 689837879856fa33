/**
 * Helpers for the watch tests: many distinct, valid JPEGs from one sharp encode (a COM
 * segment with a counter after SOI changes the bytes, not the picture), and waiting for
 * events of a watcher.
 */
import {createHash} from 'node:crypto'
import {mkdirSync, renameSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {imageBytes} from '../helpers/lakeFixtures.js'
import type {WatchEvent} from '../../src/lake/watch.js'

let base: Buffer | undefined

/** A small JPEG made once with sharp. */
export async function baseJpeg(): Promise<Buffer> {
  base ??= await imageBytes(7, {width: 16, height: 16, format: 'jpeg'})
  return base
}

/** Variant `i` of a JPEG: a comment segment after SOI makes the bytes (and SHA-256) unique. */
export function jpegVariant(jpeg: Buffer, i: number): Buffer {
  const text = Buffer.from(`mlcap test image ${i}`)
  const segment = Buffer.alloc(4 + text.length)
  segment[0] = 0xff
  segment[1] = 0xfe
  segment.writeUInt16BE(text.length + 2, 2)
  text.copy(segment, 4)
  return Buffer.concat([jpeg.subarray(0, 2), segment, jpeg.subarray(2)])
}

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')

/**
 * Writes `count` variants into `staging` (same file system), so they can be renamed into a
 * watched folder at once. Returns their names.
 */
export async function stageJpegs(staging: string, count: number, first = 0, prefix = 'img'): Promise<string[]> {
  const jpeg = await baseJpeg()
  mkdirSync(staging, {recursive: true})
  const names: string[] = []
  for (let i = first; i < first + count; i++) {
    const name = `${prefix}-${String(i).padStart(5, '0')}.jpg`
    writeFileSync(path.join(staging, name), jpegVariant(jpeg, i))
    names.push(name)
  }
  return names
}

export function moveAll(from: string, to: string, names: string[]): void {
  mkdirSync(to, {recursive: true})
  for (const name of names) renameSync(path.join(from, name), path.join(to, name))
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `condition` every 50 ms until it holds; fails naming `what` after `timeoutMs`. */
export async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`)
    await sleep(50)
  }
}

/** Collects a watcher's events and lets a test wait for one that matches. */
export class EventLog {
  readonly events: WatchEvent[] = []
  private waiters: Array<{match: (e: WatchEvent) => boolean; resolve: (e: WatchEvent) => void}> = []

  readonly onEvent = (e: WatchEvent): void => {
    this.events.push(e)
    for (const w of [...this.waiters]) {
      if (w.match(e)) {
        this.waiters.splice(this.waiters.indexOf(w), 1)
        w.resolve(e)
      }
    }
  }

  of<T extends WatchEvent['type']>(type: T): Extract<WatchEvent, {type: T}>[] {
    return this.events.filter((e) => e.type === type) as Extract<WatchEvent, {type: T}>[]
  }

  waitFor(match: (e: WatchEvent) => boolean, timeoutMs = 20_000, what = 'an event'): Promise<WatchEvent> {
    const seen = this.events.find(match)
    if (seen) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; events: ${JSON.stringify(this.events.map((e) => e.type))}`)), timeoutMs)
      this.waiters.push({
        match,
        resolve: (e) => {
          clearTimeout(timer)
          resolve(e)
        },
      })
    })
  }
}
