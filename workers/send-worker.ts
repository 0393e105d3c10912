// Process entry of a send worker for process managers that start a file rather than a command:
// `node --import tsx workers/send-worker.ts` is `newsletter worker` (src/workers/send.ts does the work).
import { main } from '../src/cli/main.ts';

await main([process.argv[0] ?? 'node', process.argv[1] ?? 'send-worker', 'worker']);
