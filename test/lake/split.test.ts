import {test} from 'node:test'
import assert from 'node:assert/strict'
import {DEFAULT_SPLIT_RATIOS, assignSplit, parseSplitRatios, stableUniform, validateSplitRatios, type Split} from '../../src/lake/split.js'

test('stable: pinned values, the same on every run and machine', () => {
  // Pinned: if these change, every existing dataset's split changes. Do not update casually.
  const pinned = ['a', 'b', 'c', 'group-1', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'].map((k) => [k, stableUniform(k)])
  assert.deepEqual(pinned.map(([k, u]) => [k, (u as number).toFixed(12)]), PINNED)
  for (const [k, u] of pinned) assert.ok((u as number) >= 0 && (u as number) < 1, String(k))
})

// Cross-checked with Python: int.from_bytes(sha256(b"\0" + key).digest()[:8], "big") >> 11, / 2**53.
const PINNED: Array<[string, string]> = [
  ['a', '0.008459656011'],
  ['b', '0.343432747145'],
  ['c', '0.349606227399'],
  ['group-1', '0.188270951587'],
  ['e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', '0.826406808825'],
]

test('defaults are 0.9 / 0.05 / 0.05 and the observed shares match them', () => {
  assert.deepEqual({...DEFAULT_SPLIT_RATIOS}, {train: 0.9, val: 0.05, test: 0.05})
  const counts: Record<Split, number> = {train: 0, val: 0, test: 0}
  const n = 40_000
  for (let i = 0; i < n; i++) counts[assignSplit(`key-${i}`)]++
  assert.ok(Math.abs(counts.train / n - 0.9) < 0.01, JSON.stringify(counts))
  assert.ok(Math.abs(counts.val / n - 0.05) < 0.006, JSON.stringify(counts))
  assert.ok(Math.abs(counts.test / n - 0.05) < 0.006, JSON.stringify(counts))
})

test('same key → same split; seed changes the assignment; ratios only move the boundaries', () => {
  for (let i = 0; i < 200; i++) assert.equal(assignSplit(`k${i}`), assignSplit(`k${i}`))
  let moved = 0
  for (let i = 0; i < 1000; i++) if (assignSplit(`k${i}`, DEFAULT_SPLIT_RATIOS, 'other-seed') !== assignSplit(`k${i}`)) moved++
  assert.ok(moved > 50, `seed moved ${moved} of 1000`)
  // Growing test at the expense of train never moves a key out of test or val.
  for (let i = 0; i < 1000; i++) {
    const before = assignSplit(`k${i}`, {train: 0.9, val: 0.05, test: 0.05})
    const after = assignSplit(`k${i}`, {train: 0.8, val: 0.05, test: 0.15})
    if (before === 'test') assert.equal(after, 'test')
  }
  assert.equal(assignSplit('x', {train: 1, val: 0, test: 0}), 'train')
  assert.equal(assignSplit('x', {train: 0, val: 0, test: 1}), 'test')
})

test('seed and key are separated (no concatenation collisions)', () => {
  assert.notEqual(stableUniform('bc', 'a'), stableUniform('c', 'ab'))
})

test('parseSplitRatios: percentages and fractions', () => {
  // the stored values are the decimals the user typed, with no float noise from subtraction
  assert.deepEqual(parseSplitRatios('90/5/5'), {train: 0.9, val: 0.05, test: 0.05})
  assert.deepEqual(parseSplitRatios('80/10/10'), {train: 0.8, val: 0.1, test: 0.1})
  assert.deepEqual(parseSplitRatios('0.8/0.1/0.1'), parseSplitRatios('80/10/10'))
  assert.deepEqual(parseSplitRatios('100/0/0'), {train: 1, val: 0, test: 0})
  assert.deepEqual(parseSplitRatios(' 95 / 5 / 0 '), {train: 0.95, val: 0.05, test: 0})
  assert.ok(Math.abs(parseSplitRatios('33.3/33.3/33.4').test - 0.334) < 1e-12)
})

test('parseSplitRatios: invalid input names the value and the expectation', () => {
  assert.throws(() => parseSplitRatios('90/5'), /Expected TRAIN\/VAL\/TEST, three non-negative numbers .* for split ratios but received "90\/5"/)
  assert.throws(() => parseSplitRatios('90/5/x'), /received "90\/5\/x"/)
  assert.throws(() => parseSplitRatios('90/-5/15'), /received "90\/-5\/15"/)
  assert.throws(() => parseSplitRatios('90/5/4'), /adding up to 100 .* not 99, for split ratios but received "90\/5\/4"/)
  assert.throws(() => parseSplitRatios(''), /for split ratios/)
  assert.throws(() => parseSplitRatios('1e2/0/0'), /for split ratios/)
  try {
    parseSplitRatios('90/5/4')
  } catch (error) {
    assert.equal((error as {code?: string}).code, 'INVALID_PARAMETER')
  }
})

test('assignSplit validates its arguments', () => {
  assert.throws(() => assignSplit('k', {train: 0.9, val: 0.05, test: 0.1}), /Expected train \+ val \+ test = 1 for split ratios/)
  assert.throws(() => assignSplit('k', {train: 1.2, val: -0.1, test: -0.1}), /for split ratios.train/)
  assert.throws(() => assignSplit('', DEFAULT_SPLIT_RATIOS), /for groupKey/)
  assert.doesNotThrow(() => validateSplitRatios({train: 0.7, val: 0.2, test: 0.1}))
})
