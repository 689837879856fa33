/**
 * Deterministic train/val/test assignment for gold. A key (the near-duplicate group id,
 * so a group is never split) goes to a split by a stable hash:
 *
 *   u = first 53 bits of SHA-256(UTF-8 of seed + "\0" + key) / 2^53      (uniform in [0, 1))
 *   train if u < train; val if u < train + val; test otherwise.
 *
 * The NUL separator keeps ("ab", "c") and ("a", "bc") apart. Same answer on every run,
 * machine and Node version (SHA-256 and IEEE doubles only); adding images never moves an
 * existing key; changing the seed reshuffles everything.
 */
import {createHash} from 'node:crypto'
import {invalidParameter} from './errors.js'

export type Split = 'train' | 'val' | 'test'

export type SplitRatios = {train: number; val: number; test: number}

export const DEFAULT_SPLIT_RATIOS: Readonly<SplitRatios> = Object.freeze({train: 0.9, val: 0.05, test: 0.05})

export const DEFAULT_SPLIT_SEED = ''

const TOLERANCE = 1e-9

/** Throws invalidParameter unless the three ratios are finite, ≥ 0 and add up to 1. */
export function validateSplitRatios(ratios: SplitRatios, name = 'split ratios'): SplitRatios {
  if (ratios === null || typeof ratios !== 'object') throw invalidParameter(name, 'an object {train, val, test}', ratios)
  for (const key of ['train', 'val', 'test'] as const) {
    const v = ratios[key]
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1) throw invalidParameter(`${name}.${key}`, 'number between 0 and 1', v)
  }
  const sum = ratios.train + ratios.val + ratios.test
  if (Math.abs(sum - 1) > TOLERANCE) throw invalidParameter(name, 'train + val + test = 1', `${ratios.train} + ${ratios.val} + ${ratios.test} = ${sum}`)
  return ratios
}

/** Uniform number in [0, 1) from SHA-256 of seed + NUL + key. */
export function stableUniform(key: string, seed: string = DEFAULT_SPLIT_SEED): number {
  const digest = createHash('sha256').update(`${seed}\0${key}`, 'utf8').digest()
  // The first 53 bits: all 32 of the first word, the top 21 of the second.
  return (digest.readUInt32BE(0) * 2 ** 21 + (digest.readUInt32BE(4) >>> 11)) / 2 ** 53
}

/** The split of a key (see the module comment). */
export function assignSplit(groupKey: string, ratios: SplitRatios = DEFAULT_SPLIT_RATIOS, seed: string = DEFAULT_SPLIT_SEED): Split {
  if (typeof groupKey !== 'string' || groupKey === '') throw invalidParameter('groupKey', 'non-empty string', groupKey)
  if (typeof seed !== 'string') throw invalidParameter('seed', 'string', seed)
  if (ratios !== DEFAULT_SPLIT_RATIOS) validateSplitRatios(ratios)
  const u = stableUniform(groupKey, seed)
  if (u < ratios.train) return 'train'
  if (u < ratios.train + ratios.val) return 'val'
  return 'test'
}

/**
 * Parse `TRAIN/VAL/TEST`: three non-negative numbers that add up to 100 (percentages,
 * `90/5/5`) or to 1 (fractions, `0.8/0.1/0.1`). Returns fractions.
 */
export function parseSplitRatios(text: string): SplitRatios {
  const expected = 'TRAIN/VAL/TEST, three non-negative numbers adding up to 100 (like 90/5/5) or 1 (like 0.8/0.1/0.1),'
  if (typeof text !== 'string') throw invalidParameter('split ratios', expected, text)
  const parts = text.trim().split('/')
  if (parts.length !== 3 || parts.some((p) => !/^\s*(?:\d+(?:\.\d*)?|\.\d+)\s*$/.test(p))) throw invalidParameter('split ratios', expected, text)
  const [train, val, test] = parts.map(Number) as [number, number, number]
  const sum = train + val + test
  let scale: number
  if (Math.abs(sum - 100) <= 100 * TOLERANCE) scale = 100
  else if (Math.abs(sum - 1) <= TOLERANCE) scale = 1
  else throw invalidParameter('split ratios', `three numbers adding up to 100 (like 90/5/5) or 1 (like 0.8/0.1/0.1), not ${sum},`, text)
  // Each part divided on its own, so 80/10/10 stores 0.1 for test, not 1 - 0.8 - 0.1 =
  // 0.09999999999999998; assignSplit gives test whatever train and val leave anyway.
  return validateSplitRatios({train: train / scale, val: val / scale, test: test / scale}, 'split ratios')
}
