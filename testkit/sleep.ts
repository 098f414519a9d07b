/** The one sleep of the tests and the bench. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
