// Open the OHIF study list and a study in Debian's Chromium; report what was seen as JSON on stdout.
// Usage: node ohif_check.mjs VIEWER_URL STUDY_UID TEXT_IN_STUDY_LIST SCREENSHOT_PATH
import { chromium } from 'playwright-core';

const [viewerUrl, studyUid, listedText, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--use-gl=angle', '--use-angle=swiftshader', '--enable-unsafe-swiftshader'],
});
const result = { listed: false, rendered: false, nonBlackPixels: 0, errors: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('pageerror', (error) => result.errors.push(String(error)));
  page.on('console', (message) => {
    if (message.type() === 'error') result.errors.push(`console: ${message.text()}`.slice(0, 300));
  });
  page.on('response', (response) => {
    if (response.status() >= 400) result.errors.push(`HTTP ${response.status()} ${response.url()}`.slice(0, 300));
  });
  page.on('requestfailed', (request) => result.errors.push(`failed ${request.url()}`.slice(0, 300)));
  await page.goto(`${viewerUrl}/`, { waitUntil: 'load' });
  await page.getByText(listedText, { exact: false }).first().waitFor({ timeout: 45000 });
  result.listed = true;
  await page.goto(`${viewerUrl}/viewer?StudyInstanceUIDs=${studyUid}`, { waitUntil: 'load' });
  // Cornerstone draws into a 2D canvas; count pixels that are not black once an image is there.
  const handle = await page.waitForFunction(
    () => {
      for (const canvas of document.querySelectorAll('canvas')) {
        if (!canvas.width || !canvas.height) continue;
        const context = canvas.getContext('2d', { willReadFrequently: true });
        if (!context) continue;
        const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
        let lit = 0;
        for (let i = 0; i < data.length; i += 4) if (data[i] + data[i + 1] + data[i + 2] > 30) lit++;
        if (lit > 100) return lit;
      }
      return false;
    },
    null,
    { timeout: 120000, polling: 500 },
  );
  result.nonBlackPixels = await handle.jsonValue();
  result.rendered = true;
  await page.screenshot({ path: screenshot });
} catch (error) {
  result.errors.push(String(error));
  const pages = browser.contexts().flatMap((context) => context.pages());
  if (pages.length) await pages[0].screenshot({ path: screenshot }).catch(() => {});
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(result));
