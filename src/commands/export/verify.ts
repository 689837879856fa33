import {Args} from '@oclif/core'
import {stat} from 'node:fs/promises'
import path from 'node:path'

import {LakeCommand} from '../../cli/lakeCommand.js'
import {readManifest, verifyExport, type ExportCounts, type VerifyResult} from '../../export/index.js'
import {EXIT, MlcapError, UsageError} from '../../lake/errors.js'

export interface VerifyOutput extends VerifyResult {
  dir: string
  format: string | null
  createdFrom: Record<string, unknown> | null
  counts: ExportCounts | null
}

export default class ExportVerify extends LakeCommand<typeof ExportVerify> {
  static override summary = 'Check an export folder against its manifest: every file present, unchanged, and nothing else.'

  static override description = `Reads DIR/manifest.json and compares each listed file's size and SHA-256; files and folders not in the manifest are reported too, and so are paths it lists twice and counts that disagree with each other or with the files it lists. Exit status 0 when the folder is exactly what mlcap wrote, 1 when anything differs (each problem is listed: missing, size, sha256, unexpected, duplicate, count) or the manifest itself is damaged (EXPORT_MANIFEST_INVALID). Needs no lake.`

  static override examples = [
    '<%= config.bin %> export verify ./export/hf',
    '<%= config.bin %> export verify ./export/hf --json',
  ]

  static override args = {
    dir: Args.string({description: 'the export folder', required: true}),
  }

  async run(): Promise<VerifyOutput> {
    const dir = path.resolve(this.args.dir)
    const info = await stat(dir).catch(() => null)
    if (!info?.isDirectory()) {
      throw new UsageError('EXPORT_NOT_FOUND', `export verify: ${dir} is not a folder; expected the folder an mlcap export wrote`, 'pass the --out folder of mlcap export')
    }
    const manifest = await readManifest(dir)
    const result = await verifyExport(dir)
    const output: VerifyOutput = {
      dir,
      format: manifest?.format ?? null,
      createdFrom: manifest?.created_from ?? null,
      counts: manifest?.counts ?? null,
      ...result,
    }
    if (result.ok) {
      if (!this.jsonEnabled()) {
        this.log(`OK: ${dir} matches its manifest (${manifest!.format}, ${manifest!.counts.samples} images, ${manifest!.files.length + 1} files, lake commit ${String(manifest!.created_from.lake_commit ?? '?')}).`)
      }
      return output
    }
    if (this.jsonEnabled()) {
      process.exitCode = EXIT.failure // the result (with every problem) is the JSON output
      return output
    }
    for (const problem of result.problems) this.log(`${problem.problem.padEnd(10)} ${problem.path}${problem.detail === undefined ? '' : `: ${problem.detail}`}`)
    const noManifest = manifest === null
    throw new MlcapError(
      'EXPORT_VERIFY_FAILED',
      noManifest
        ? `export verify: ${dir} has no manifest.json; expected a complete mlcap export (an unfinished one never has a manifest)`
        : `export verify: ${result.problems.length} problem(s) in ${dir}: ${summarize(result)}; expected every file as the manifest lists it, and its counts to agree with them`,
      {hint: 'the folder was modified, damaged or not completely copied: copy it again from a good copy, or export again'},
    )
  }
}

function summarize(result: VerifyResult): string {
  const byKind = new Map<string, number>()
  for (const p of result.problems) byKind.set(p.problem, (byKind.get(p.problem) ?? 0) + 1)
  return [...byKind].map(([kind, n]) => `${n} ${kind}`).join(', ')
}
