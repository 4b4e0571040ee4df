/** Runs `fn` over `items` with at most `limit` calls in flight; the first failure stops new calls and is thrown. */
export async function mapLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const failure: { failed: boolean; err?: unknown } = { failed: false };
  const worker = async (): Promise<void> => {
    while (!failure.failed && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (err) {
        if (!failure.failed) Object.assign(failure, { failed: true, err });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure.failed) throw failure.err;
}
