import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { launchBrowser, signIn } from '../helpers/browser.js';
import { startDemoFleet } from '../helpers/demo-fleet.js';
import { tempDir } from '../helpers/temp-dir.js';
import { ROOT } from '../helpers/processes.js';

/**
 * `npm run screenshots`: sets up a demo-like fleet on a real xcared (test/helpers/demo-fleet.ts), signs in to the
 * console in headless Debian chromium and writes a 1280x800 PNG of each page into docs/screenshots/ (or
 * SCREENSHOTS_DIR) for the README.
 */
async function main(): Promise<void> {
  const out = process.env.SCREENSHOTS_DIR ?? join(ROOT, 'docs', 'screenshots');
  mkdirSync(out, { recursive: true });
  const dir = tempDir('xcare-screenshots-');
  const fleet = await startDemoFleet(dir.path);
  const browser = await launchBrowser({ width: 1280, height: 800 });
  const { page } = browser;
  const base = fleet.daemon.url;
  const shot = async (name: string) => {
    const file = join(out, `${name}.png`);
    await page.screenshot({ path: file });
    process.stdout.write(`${file} (${Math.round(statSync(file).size / 1024)} KB)\n`);
  };
  try {
    await page.goto(`${base}/login`);
    await shot('login');
    await signIn(page, base, fleet.tokens.operator);
    await page.waitForSelector('#queue-rows tr[data-ticket]');
    await shot('queue');
    const first = await page.getAttribute('#queue-rows tr.top[data-ticket]', 'data-ticket');
    const withChildren = await page.$('#queue-rows tr.child');
    const parentId = withChildren ? await page.evaluate((el) => {
      let row = el.previousElementSibling;
      while (row && !row.classList.contains('top')) row = row.previousElementSibling;
      return row?.getAttribute('data-ticket') ?? null;
    }, withChildren) : null;
    await page.goto(`${base}/tickets/${parentId ?? first}`);
    await shot('ticket');
    await page.goto(`${base}/fleet`);
    await shot('fleet');
    await page.goto(`${base}/devices/gw-acme-02`);
    await shot('device');
    await page.goto(`${base}/rollouts`);
    await shot('rollouts');
    await page.goto(`${base}/rollouts/${encodeURIComponent(fleet.rolloutId)}`);
    await shot('rollout');
    await page.goto(`${base}/audit`);
    await shot('audit');
  } finally {
    await browser.close();
    await fleet.stop();
    dir.cleanup();
  }
}

main().catch((err) => {
  process.stderr.write(`screenshots: ${(err as Error).stack ?? err}\n`);
  process.exitCode = 1;
});
