// Runs once before the suite, in vitest's main process: most test files start the real bus, so
// the binary is built here (once) when there is none, rather than failing in every file.
import { ensureEventbusBin } from './helpers/binary.js';

export default function setup(): void {
  ensureEventbusBin();
}
