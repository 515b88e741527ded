import { join } from "node:path";
import { pathToFileURL } from "node:url";

/**
 * The file URL of the module whose `import.meta.url` is given. In a browser-like test environment
 * (vitest with happy-dom, where React components are tested against a real server) that is the
 * dev server's http URL of the file; files are then found relative to the working directory (or
 * under `/@fs/` when outside it).
 */
export function moduleFile(url: string): string {
  if (url.startsWith("file:")) return url;
  const path = decodeURIComponent(new URL(url).pathname);
  return pathToFileURL(path.startsWith("/@fs/") ? path.slice(4) : join(process.cwd(), path)).href;
}
