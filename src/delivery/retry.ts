/**
 * Runs `attempt`, and again after each delay while it throws; the last error is rethrown. The
 * delays are the caller's (injected), so tests don't sleep.
 */
export async function withRetries<T>(attempt: () => Promise<T>, delaysMs: readonly number[]): Promise<T> {
  for (let index = 0; ; index += 1) {
    try {
      return await attempt();
    } catch (error) {
      const delay = delaysMs[index];
      if (delay === undefined) throw error;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
