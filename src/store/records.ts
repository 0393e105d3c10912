import type { z } from 'zod';

/** A stored record that doesn't parse; the message names the record and each bad field. Never guessed at. */
export class CorruptRecordError extends Error {
  override readonly name = 'CorruptRecordError';
}

/** Parses what came out of Redis, or throws CorruptRecordError naming `what`. */
export function parseRecord<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw new CorruptRecordError(
    `${what} is unreadable: ${parsed.error.issues.map((issue) => `${issue.path.join('.') || '(value)'}: ${issue.message}`).join('; ')}`,
  );
}

/** JSON.parse that gives undefined for text that isn't JSON, so the schema reports it. */
export function parseJson(text: string | null | undefined): unknown {
  if (text === null || text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** A flat Redis reply [subscriberId, jobId, subscriberId, jobId, …] (HSCAN, HRANDFIELD, a script's) as pairs. */
export function subscriberJobPairs(flat: readonly string[]): { subscriberId: string; jobId: string }[] {
  const result: { subscriberId: string; jobId: string }[] = [];
  for (let index = 0; index + 1 < flat.length; index += 2) result.push({ subscriberId: flat[index]!, jobId: flat[index + 1]! });
  return result;
}
