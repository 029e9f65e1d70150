// The web app in real headless Chromium, driven through its data-testid hooks (the contract
// other tests are written against). Run by crates/app/tests/webapp.rs, which starts the app
// and passes: APP_URL (the printed URL with its token), GALLERY (a folder of images),
// IMAGES (how many), QUERY (an edited copy of one of them), EXPECTED_NAME (its original's
// name); SHOTS (optional): a folder for screenshots of browse and search.
import { chromium } from "playwright-core";
import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const url = env("APP_URL");
const gallery = env("GALLERY");
const images = Number(env("IMAGES"));
const query = env("QUERY");
const expected = env("EXPECTED_NAME");
const extra = env("EXTRA").split(":");
const shots = process.env.SHOTS;
const check = (ok, what) => {
  if (!ok) throw new Error(`failed: ${what}`);
  console.log(`ok: ${what}`);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
    "--no-first-run", "--disable-component-update", "--disable-sync",
  ],
});
const problems = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  page.setDefaultTimeout(120_000);
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  // a request to anywhere but the app would be an outside resource
  const origin = new URL(url).origin;
  page.on("request", (r) => {
    const u = r.url();
    if (!u.startsWith(origin) && !u.startsWith("data:") && !u.startsWith("blob:")) problems.push(`outside request: ${u}`);
  });

  await page.goto(url);
  check(new URL(page.url()).search === "", "the token is dropped from the address");
  const paint = await page.evaluate(() => new Promise((resolve) => {
    new PerformanceObserver((list) => {
      const entry = list.getEntriesByName("first-contentful-paint")[0];
      if (entry) resolve(entry.startTime);
    }).observe({ type: "paint", buffered: true });
    setTimeout(() => resolve(null), 5000);
  }));
  console.log(`first contentful paint: ${paint} ms`);
  check(paint !== null && paint < 1000, "first paint under a second");

  // create a collection (the form is open when there is none)
  await page.getByTestId("collection-new").click();
  await page.getByTestId("collection-name").fill("photos");
  await page.getByTestId("collection-kind").selectOption("embedding");
  await page.getByTestId("collection-create").click();
  await page.getByTestId("ingest-path").waitFor({ state: "visible", timeout: 300_000 });
  check(true, "collection created");

  // ingest the folder: live progress, then every file counted
  await page.getByTestId("ingest-path").fill(gallery);
  await page.getByTestId("ingest-start").click();
  const progress = page.getByTestId("progress");
  check(await progress.isVisible(), "the progress bar shows");
  // the wait a test outside the project would write: data-done reaching data-total, which
  // the page publishes only once the ingest has wholly landed (merged, thumbnails made,
  // the grid reloaded)
  let partial = null;
  await page.waitForFunction(() => {
    const p = document.querySelector('[data-testid="progress"]');
    if (p.dataset.state === "running" && Number(p.dataset.done) > 0) window.__partial = p.dataset.done;
    return Number(p.dataset.total) > 0 && p.dataset.done === p.dataset.total;
  }, null, { timeout: 900_000, polling: 50 });
  partial = await page.evaluate(() => window.__partial ?? null);
  console.log(`progress seen running at ${partial} of ${images + 1}`);
  const done = Number(await progress.getAttribute("data-done"));
  const total = Number(await progress.getAttribute("data-total"));
  check(total === images + 1 && done === total, `progress ${done}/${total} (${images} images and one file that is not)`);
  check(await progress.getAttribute("data-state") === "done", "and its state is done");
  check((await page.locator("#ingest-problems-list li").count()) === 1, "the unreadable file is listed");

  // browse: a thumbnail per image, decoded, named, there as soon as the progress is done
  const shown = await page.$$eval('[data-testid="thumbnail"] img', (imgs) => imgs.length);
  check(shown >= Math.min(images, 60), `${shown} thumbnails there when the progress says done`);
  const thumbs = page.getByTestId("thumbnail");
  check(await thumbs.first().getAttribute("data-name") !== null, "thumbnails carry their names");
  const decoded = await page.$$eval('[data-testid="thumbnail"] img', (imgs) => imgs.every((i) => i.complete && i.naturalWidth > 0 && i.alt));
  check(decoded, "every browsed thumbnail decoded, with alt text");
  if (shots) {
    mkdirSync(shots, { recursive: true });
    await page.screenshot({ path: join(shots, "browse.png") });
  }

  // drop an edited copy on the page
  const bytes = readFileSync(query).toString("base64");
  const transfer = await page.evaluateHandle((b64) => {
    const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const t = new DataTransfer();
    t.items.add(new File([data], "edited-copy.png", { type: "image/png" }));
    return t;
  }, bytes);
  const dropped = Date.now();
  await page.dispatchEvent("#dropzone", "drop", { dataTransfer: transfer });
  await page.getByTestId("result").first().waitFor({ timeout: 300_000 });
  const shownAfter = Date.now() - dropped;
  const match = page.locator(`[data-testid="result"][data-name="${expected}"]`);
  check(await match.count() === 1, `the original ${expected} is among the results`);
  const width = await match.locator("img").evaluate((i) => i.naturalWidth);
  check(width > 0, `its thumbnail decoded (naturalWidth ${width})`);
  const score = Number(await match.getAttribute("data-score"));
  check(score > 0.5 && score <= 1.0001, `its score ${score}`);
  check(await match.getAttribute("data-image-id") !== null, "results carry their ids");
  const { pageMs, searchMs } = await page.evaluate(() => ({ ...document.getElementById("search").dataset }));
  console.log(`drop to results: ${pageMs} ms in the page (${shownAfter} ms seen by the driver), the encrypted search and retrieval ${searchMs} ms`);
  check(Number(pageMs) - Number(searchMs) <= 200, `the page adds ${Number(pageMs) - Number(searchMs)} ms to the search (at most 200)`);
  if (shots) await page.screenshot({ path: join(shots, "search.png") });

  // the file input takes a query too
  await page.getByTestId("query-input").setInputFiles(query);
  await page.waitForFunction(() => document.getElementById("search-title").textContent.includes("results for edited-copy"));
  check(await page.locator(`[data-testid="result"][data-name="${expected}"]`).count() === 1, "a chosen file searches the same");

  // paste an image: the same search
  await page.evaluate((b64) => {
    const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const t = new DataTransfer();
    t.items.add(new File([data], "pasted.png", { type: "image/png" }));
    document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: t, bubbles: true }));
  }, bytes);
  await page.waitForFunction(() => document.getElementById("search-title").textContent.includes("results for pasted"));
  check(await page.locator(`[data-testid="result"][data-name="${expected}"]`).count() === 1, "a pasted image searches the same");

  // "similar" on a result: a new search with its thumbnail
  const first = page.getByTestId("result").first();
  const firstName = await first.getAttribute("data-name");
  await first.getByTestId("similar").click();
  await page.waitForFunction((n) => document.getElementById("search-title").textContent.includes(`results for like ${n}`), firstName);
  check(await page.locator(`[data-testid="result"][data-name="${firstName}"]`).count() === 1, `"similar" finds ${firstName} itself`);

  // "similar" on a browsed thumbnail, and the grid by keyboard
  const browsed = thumbs.nth(5);
  const browsedName = await browsed.getAttribute("data-name");
  await browsed.hover();
  await browsed.getByTestId("similar").click();
  await page.waitForFunction((n) => document.getElementById("search-title").textContent.includes(`results for like ${n}`), browsedName);
  check(await page.locator(`[data-testid="result"][data-name="${browsedName}"]`).count() === 1, `"similar" on a browsed thumbnail finds ${browsedName}`);
  await thumbs.nth(0).focus();
  await page.keyboard.press("ArrowRight");
  const focused = await page.evaluate(() => document.activeElement?.dataset?.imageId ?? null);
  check(focused === await thumbs.nth(1).getAttribute("data-image-id"), "the arrow keys move through the grid");

  // delete an image (select, confirm) and see it gone, also after a reload
  const victim = thumbs.nth(2);
  const victimId = await victim.getAttribute("data-image-id");
  await victim.click();
  page.once("dialog", (d) => d.accept());
  await page.getByTestId("delete").click();
  await page.waitForFunction((id) => !document.querySelector(`[data-image-id="${id}"]`), victimId);
  check(true, `image ${victimId} gone from the page`);
  await page.reload();
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="thumbnail"]').length >= n, Math.min(images - 1, 60));
  check(await page.locator(`[data-testid="thumbnail"][data-image-id="${victimId}"]`).count() === 0, "and after a reload");

  // files chosen (or dropped) for the ingest: sent, ingested, shown
  const before = await page.getByTestId("thumbnail").count();
  await page.getByTestId("ingest-files").setInputFiles(extra);
  await page.waitForFunction((n) => {
    const p = document.querySelector('[data-testid="progress"]');
    return p.dataset.state === "done" && Number(p.dataset.total) === n;
  }, extra.length, { timeout: 300_000 });
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid="thumbnail"]').length >= n, Math.min(before + extra.length, 60));
  const names = await page.$$eval('[data-testid="thumbnail"]', (ts) => ts.map((t) => t.dataset.name));
  check(extra.every((p) => names.includes(p.split("/").pop())), "chosen files are ingested and shown");

  if (shots) {
    const dark = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: "dark" });
    const p = await dark.newPage();
    await p.context().addCookies(await context.cookies());
    await p.goto(new URL(url).origin + "/");
    await p.waitForFunction(() => document.querySelectorAll('[data-testid="thumbnail"] img').length > 8);
    await p.screenshot({ path: join(shots, "browse-dark.png") });
  }
  check(problems.length === 0, `no console error, page error or outside request${problems.length ? `: ${problems.join("; ")}` : ""}`);
} finally {
  await browser.close();
}
