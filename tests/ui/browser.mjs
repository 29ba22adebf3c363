// What every browser test file launches.

import { chromium } from 'playwright-core';

/** Debian's Chromium (or $CHROMIUM), headless, with a fresh profile. */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    // Playwright gives each launch a fresh, empty profile directory.
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-quic', '--disable-sync'],
  });
}
