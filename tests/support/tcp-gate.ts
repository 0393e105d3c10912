import { connect, createServer, type Socket } from 'node:net';

/**
 * A TCP proxy on a loopback port of its own that stays bound for the whole test, in front of a
 * server (the SMTP sink). While open it pipes each connection to the target; while shut each
 * incoming connection is reset at once, which a client sees as a server that is down. Because the
 * port never changes hands, no other test can take it during an "outage", unlike stopping a server
 * and starting it again on its old port.
 */
export interface TcpGate {
  /** `smtp://127.0.0.1:<gate port>`: point SMTP_URL here. */
  readonly url: string;
  readonly port: number;
  /** Whether connections go through now. */
  isOpen(): boolean;
  /** Lets connections through to `targetPort` (or the target already set). */
  open(targetPort?: number): void;
  /** Refuses service from now on, and cuts the connections already piped through, as an outage does. */
  shut(): void;
  /** Connections that arrived while shut. */
  refused(): number;
  /** Connections that went through to the target. */
  passed(): number;
  /** Stops listening and destroys every connection. */
  stop(): Promise<void>;
}

/** Starts a gate, shut unless `open` (which needs `targetPort`). */
export async function startTcpGate(options: { readonly targetPort?: number; readonly open?: boolean } = {}): Promise<TcpGate> {
  if (options.open && options.targetPort === undefined) throw new Error('tcp gate: an open gate needs a target port');
  let target = options.targetPort;
  let open = options.open ?? false;
  let refused = 0;
  let passed = 0;
  const piped = new Set<Socket>();

  const pipeThrough = (client: Socket) => {
    if (target === undefined) throw new Error('tcp gate: open() needs a target port');
    passed += 1;
    const upstream = connect(target, '127.0.0.1');
    for (const socket of [client, upstream]) {
      piped.add(socket);
      // Either side going away ends the other; errors (resets) are part of what this simulates.
      socket.on('error', () => undefined);
      socket.on('close', () => {
        piped.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  };

  const server = createServer((client) => {
    client.on('error', () => undefined);
    if (open) return pipeThrough(client);
    refused += 1;
    client.resetAndDestroy();
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : 0);
    });
  });

  let stopping: Promise<void> | undefined;
  return {
    url: `smtp://127.0.0.1:${port}`,
    port,
    isOpen: () => open,
    open(targetPort) {
      if (targetPort !== undefined) target = targetPort;
      if (target === undefined) throw new Error('tcp gate: open() needs a target port');
      open = true;
    },
    shut() {
      open = false;
      for (const socket of piped) socket.destroy();
    },
    refused: () => refused,
    passed: () => passed,
    stop() {
      stopping ??= new Promise<void>((resolve) => {
        open = false;
        for (const socket of piped) socket.destroy();
        server.close(() => resolve());
      });
      return stopping;
    },
  };
}
