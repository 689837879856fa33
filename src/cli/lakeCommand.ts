import {Command, Flags, Interfaces} from '@oclif/core'
import chalk from 'chalk'

import {EXIT, MlcapError} from '../lake/errors.js'
import {LakeLayout, resolveLakeRoot} from '../lake/layout.js'

export type LakeFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof LakeCommand)['baseFlags'] & T['flags']>
export type LakeArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

/**
 * What every mlcap command shares: the --lake flag, --json (the command's return value is
 * the JSON output, a contract tests pin), --debug, and the mapping from core errors to a
 * message, a hint and an exit code (0 ok, 1 failure, 2 usage, 3 lake busy).
 */
export abstract class LakeCommand<T extends typeof Command> extends Command {
  static override enableJsonFlag = true

  static override baseFlags = {
    lake: Flags.directory({
      description: 'Lake folder (default: $MLCAP_LAKE or ./data/lake).',
      helpGroup: 'GLOBAL',
    }),
    debug: Flags.boolean({description: 'Show stack traces for errors.', helpGroup: 'GLOBAL'}),
  }

  protected flags!: LakeFlags<T>
  protected args!: LakeArgs<T>
  /** All positional arguments, for commands that take a list (strict = false). */
  protected positionals: string[] = []

  public override async init(): Promise<void> {
    await super.init()
    const {args, argv, flags} = await this.parse({
      flags: this.ctor.flags,
      baseFlags: (super.ctor as typeof LakeCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      args: this.ctor.args,
      strict: this.ctor.strict,
    })
    this.flags = flags as LakeFlags<T>
    this.args = args as LakeArgs<T>
    this.positionals = argv.map(String)
  }

  protected get layout(): LakeLayout {
    return new LakeLayout(resolveLakeRoot(this.flags.lake))
  }

  /** Progress and notes go to stderr, and only on a terminal and without --json. */
  protected get interactive(): boolean {
    return Boolean(process.stderr.isTTY) && !this.jsonEnabled()
  }

  protected note(message: string): void {
    if (!this.jsonEnabled()) this.logToStderr(message)
  }

  /** Warnings of a result (problems that did not undo its work): on stderr; with --json they are in the result. */
  protected noteWarnings(warnings: readonly string[] | undefined): void {
    for (const warning of warnings ?? []) this.note(`${chalk.yellow('Warning:')} ${warning}`)
  }

  protected override async catch(error: Interfaces.CommandError): Promise<unknown> {
    const debug = Boolean(this.flags?.debug) || /(^|,)mlcap/.test(process.env.DEBUG ?? '')
    if (error instanceof MlcapError) {
      process.exitCode = error.exitCode
      if (this.jsonEnabled()) {
        this.logJson({error: {code: error.code, message: error.message, hint: error.hint ?? null, exitCode: error.exitCode}})
      } else {
        this.logToStderr(`${chalk.red('Error:')} ${error.message}`)
        if (error.hint) this.logToStderr(`${chalk.dim('Hint:')} ${error.hint}`)
        if (debug && error.stack) this.logToStderr(chalk.dim(error.stack))
      }
      return undefined
    }
    // oclif's own parse errors carry exit code 2; anything else is a failure we did not foresee.
    const oclifExit = (error as {oclif?: {exit?: number}}).oclif?.exit
    if (oclifExit !== undefined) {
      // Under --json oclif would print its whole parse context (~150 KB) and exit 1: answer like any usage error.
      if (!this.jsonEnabled()) return super.catch(error)
      process.exitCode = EXIT.usage
      const message = error.message
        .split('\n')
        .map((line) => line.trim())
        .filter((line) => line !== '' && !/^See more help with|^The following errors? occurred:$/.test(line))
        .join(' ')
      this.logJson({error: {code: 'INVALID_ARGUMENTS', message, hint: `mlcap ${(this.id ?? '').replaceAll(':', ' ')} --help lists the flags and arguments`, exitCode: EXIT.usage}})
      return undefined
    }
    process.exitCode = EXIT.failure
    if (this.jsonEnabled()) {
      this.logJson({error: {code: 'UNEXPECTED', message: error.message, hint: null, exitCode: EXIT.failure}})
    } else {
      this.logToStderr(`${chalk.red('Error:')} ${error.message}`)
      this.logToStderr(debug ? chalk.dim(error.stack ?? '') : chalk.dim('Run again with --debug for details.'))
    }
    return undefined
  }
}
