// Reads {name: [SSE frame strings]} (a JSON file) and gives, per name, the UI message the
// `ai` package's readUIMessageStream builds from them, with any error it reports.
import { readFileSync } from 'node:fs';
import { readUIMessageStream } from 'ai';

const cases = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const out = {};
for (const [name, frames] of Object.entries(cases)) {
  const chunks = frames
    .flatMap((frame) => frame.split('\n'))
    .filter((line) => line.startsWith('data: ') && line !== 'data: [DONE]')
    .map((line) => JSON.parse(line.slice(6)));
  const stream = new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
  const errors = [];
  let message = null;
  try {
    const messages = readUIMessageStream({
      stream,
      onError: (error) => errors.push(String(error)),
      terminateOnError: true,
    });
    for await (const m of messages) message = m;
  } catch (error) {
    errors.push(String(error));
  }
  out[name] = { errors, parts: message ? message.parts : null };
}
process.stdout.write(JSON.stringify(out));
