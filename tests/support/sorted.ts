/** A sorted copy, in code-point order (as Array#sort without a comparator, but explicit about it). */
export function sorted<T extends string | undefined>(values: readonly T[]): T[] {
  return [...values].sort((a, b) => (String(a) < String(b) ? -1 : String(a) > String(b) ? 1 : 0));
}
