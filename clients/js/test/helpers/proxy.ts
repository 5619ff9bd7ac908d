// A loopback HTTP proxy in front of the real bus that can answer the next requests itself with
// an error (e.g. 503 + Retry-After), or forward a request and then drop the bus's answer. Every
// other request goes to the bus untouched.
import http from 'node:http';

export interface Fault {
  /** Answer this status without forwarding. */
  status?: number;
  retryAfter?: string;
  /** Forward to the bus, but answer `status` to the client instead of the bus's answer. */
  forwardThenFail?: boolean;
}

export interface FaultProxy {
  url: string;
  faults: Fault[];
  /** Requests seen, as "METHOD path". */
  requests: string[];
  close(): Promise<void>;
}

export function startFaultProxy(target: string): Promise<FaultProxy> {
  const faults: Fault[] = [];
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const fault = faults.shift();
      const answerFault = (f: Fault) => {
        res.writeHead(f.status ?? 503, {
          'content-type': 'application/problem+json',
          ...(f.retryAfter ? { 'retry-after': f.retryAfter } : {}),
        });
        res.end(JSON.stringify({ type: '/problems/overloaded', title: 'Overloaded', status: f.status ?? 503, detail: 'injected by the test proxy' }));
      };
      if (fault && !fault.forwardThenFail) return answerFault(fault);
      try {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'connection') headers[k] = v;
        const upstream = await fetch(`${target}${req.url}`, {
          method: req.method ?? 'GET',
          headers,
          ...(chunks.length ? { body: Buffer.concat(chunks) } : {}),
        });
        const body = Buffer.from(await upstream.arrayBuffer());
        if (fault) return answerFault(fault);
        res.writeHead(upstream.status, Object.fromEntries([...upstream.headers].filter(([k]) => !['content-length', 'transfer-encoding', 'connection'].includes(k))));
        res.end(body);
      } catch (error) {
        res.writeHead(502);
        res.end(String(error));
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      resolve({
        url: `http://127.0.0.1:${port}`,
        faults,
        requests,
        close: () => new Promise((r) => server.close(() => r())),
      });
    });
  });
}
