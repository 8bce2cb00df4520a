/**
 * The file: URL of the compiled src/main.js for the checkout at `root`, or null (run through tsx);
 * `note` is told why when it is null for another reason than LISTKEEPER_COMPILE_CACHE=off.
 */
export function compiledEntry(root: string, cacheDir?: string, note?: (line: string) => void): Promise<URL | null>;
/** A key for the source tree: its root, every file under root/src, and what shapes the output. */
export function sourceKey(root: string): string;
