import { ConfigError } from '../../../config/index.ts';
import { doctorSettingsOf, partialDoctorSettings, runDoctor, type DoctorCheck, type DoctorSettings } from '../../app/doctor.ts';
import { UserFacingError } from '../../core/errors.ts';
import type { CliContext } from '../context.ts';
import { printable } from '../format.ts';

const LABELS: Readonly<Record<DoctorCheck['status'], string>> = { ok: 'ok', warn: 'warn', fail: 'FAIL', skip: 'skip' };

/**
 * `newsletter doctor`: checks the config, Redis, SMTP and the templates, one line each (ok, warn,
 * FAIL, or skip when it could not run); exits 1 when a check fails. A config that does not parse
 * is a failed check, and the checks whose settings are fine still run.
 */
export async function doctorCommand(cli: CliContext, options: { json?: boolean }): Promise<void> {
  let settings: DoctorSettings;
  let configProblems: readonly string[] = [];
  try {
    settings = doctorSettingsOf(await cli.config());
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    configProblems = error.problems;
    settings = partialDoctorSettings((await cli.rawSettings?.()) ?? {});
  }
  const report = await runDoctor(settings, { configProblems });
  if (options.json) {
    cli.io.out(JSON.stringify(report, null, 2));
  } else {
    const width = Math.max(...report.checks.map((check) => check.name.length));
    for (const check of report.checks) {
      const fix = check.fix ? ` — fix: ${check.fix}` : '';
      cli.io.out(`${LABELS[check.status].padEnd(4)}  ${check.name.padEnd(width)}  ${printable(check.detail)}${printable(fix)}`);
    }
  }
  const failed = report.checks.filter((check) => check.status === 'fail').map((check) => check.name);
  if (failed.length > 0) throw new UserFacingError(`doctor: ${failed.length} check${failed.length === 1 ? '' : 's'} failed: ${failed.join(', ')}`);
}
