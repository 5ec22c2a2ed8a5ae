/**
 * What both browser drivers share: their config file, a timer, and Debian's Chromium started
 * through playwright-core with the flags this machine's closed network needs.
 */
import fs from "node:fs";
import { chromium } from "playwright-core";

export const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

/** The driver's config (argv[2]), its timeout, a tagged logger and a stopwatch. */
export function setup(tag) {
  const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const t0 = Date.now();
  const timings = {};
  return {
    cfg,
    timeout: cfg.timeoutMs ?? 60000,
    log: (...a) => console.error(`[${tag}]`, ...a),
    timings,
    mark: (name) => (timings[name] = (Date.now() - t0) / 1000),
  };
}

/** A persistent Chromium context at 1280x800, device scale 1. */
export function launch(cfg) {
  return chromium.launchPersistentContext(cfg.userDataDir, {
    executablePath: cfg.chromium,
    headless: true,
    args: FLAGS,
    viewport: { width: 1280, height: 800 },
    deviceScaleFactor: 1,
  });
}

/** Close the browser, print the result (with timings and console errors) as the last stdout
 * line — the test reads that line — and exit 0 when it is ok. */
export async function finish(ctx, result, timings, consoleErrors) {
  result.timings = timings;
  result.consoleErrors = consoleErrors;
  await ctx.close();
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
}
