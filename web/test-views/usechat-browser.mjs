// Drives the useChat page (test-views/usechat/app.jsx, served by the gateway as its static
// page) in real headless Chromium: send, reload mid-answer (useChat's `resume: true` resumes
// from GET {api}/{chatId}/stream), and stop (POST {api}/{chatId}/stop). Prints JSON results.
// Usage: node test-views/usechat-browser.mjs BASE_URL
import { chromium } from 'playwright-core';

const BASE = process.argv[2].replace(/\/+$/, '');
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];
const browser = await chromium.launch({
  executablePath: process.env.TOKENWIRE_CHROMIUM ?? '/usr/bin/chromium',
  args: ARGS,
});

const state = page => page.evaluate(() => JSON.parse(document.getElementById('state')?.textContent ?? 'null'));
const text = m => m.parts.filter(p => p.type === 'text').map(p => p.text).join('');
const answered = (s, min) => {
  const last = s?.messages?.at(-1);
  return last?.role === 'assistant' && text(last).length >= min;
};

async function until(page, check, what, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const s = await state(page);
    if (check(s)) return s;
    if (Date.now() > end) {
      throw new Error(`timed out waiting for ${what}: ${JSON.stringify(s)}\n${logs.join('\n')}`);
    }
    await page.waitForTimeout(25);
  }
}

const out = {};
const logs = []; // the page's errors and console, for a failure's message
try {
  const page = await browser.newPage();
  const requests = [];
  page.on('pageerror', e => logs.push(`pageerror: ${e}`));
  page.on('console', m => logs.push(`console.${m.type()}: ${m.text()}`));
  page.on('request', r => requests.push(`${r.method()} ${new URL(r.url()).pathname}`));

  // Send, reload mid-answer, the answer completes once.
  await page.goto(`${BASE}/?chat=reload-1&tps=80`);
  await until(page, s => s && s.status === 'ready', 'the page');
  await page.click('#send');
  const before = await until(page, s => answered(s, 30), 'the first words');
  await page.reload();
  const after = await until(
    page,
    s => s && s.status === 'ready' && s.messages.length > 0 && s.messages.at(-1).parts.some(p => p.type === 'text' && p.state === 'done'),
    'the resumed answer',
  );
  await page.waitForTimeout(300); // nothing more may arrive (no second copy)
  out.reload = { before, after: await state(page), settled: after, requests: [...requests] };

  // Stop: cancels the generation itself (every tab, every worker).
  requests.length = 0;
  await page.goto(`${BASE}/?chat=stop-1&tps=40`);
  await until(page, s => s && s.status === 'ready', 'the page');
  await page.click('#send');
  await until(page, s => answered(s, 20), 'the first words');
  await page.click('#stop');
  await until(page, s => s.status === 'ready', 'the stop');
  await page.waitForTimeout(300);
  out.stop = { state: await state(page), requests: [...requests] };
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out));
