/** The file: URL of the compiled src/main.js for the checkout at `root`, or null (run through tsx). */
export function compiledEntry(root: string, cacheDir?: string): Promise<URL | null>;
/** A key for the source tree: its root, and every file under root/src by path, size and modification time. */
export function sourceKey(root: string): string;
