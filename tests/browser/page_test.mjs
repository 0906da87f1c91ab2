// inpaint-serve's page in headless Chromium (Debian's chromium, driven by puppeteer-core):
// for each photo in DIR (photo.png, rotated.jpg with EXIF orientation 6, photo.webp), open it
// through the file chooser, paint a stroke with mouse events, wait for the fill, and check that
// only stroke pixels changed and that they changed; then undo/redo, download, the texture box,
// and no console errors. Run by tests/test_serve_page.cpp:
//   node tests/browser/page_test.mjs URL DIR
// Prints one line per check; exits 1 on the first failure, with the reason.
import puppeteer from "puppeteer-core";
import fs from "node:fs";
import path from "node:path";

const [url, dir] = process.argv.slice(2);
const chromium = process.env.PCONV_CHROMIUM || "/usr/bin/chromium";
const fail = (why) => { console.error("page_test: FAILED: " + why); process.exit(1); };
const say = (what) => console.log("page_test: " + what);

// Counts, in the page, pixels that changed between the photo sent and the answer, and how many
// of them lie outside the mask's holes (must be none) and inside (must be some).
async function compare(page, imageUrl, maskUrl, answerUrl) {
  return page.evaluate(async (imageUrl, maskUrl, answerUrl) => {
    const pixels = async (u) => {
      const b = await createImageBitmap(await (await fetch(u)).blob());
      const c = new OffscreenCanvas(b.width, b.height);
      const g = c.getContext("2d");
      g.drawImage(b, 0, 0);
      return { w: b.width, h: b.height, d: g.getImageData(0, 0, b.width, b.height).data };
    };
    const [img, mask, out] = await Promise.all([pixels(imageUrl), pixels(maskUrl), pixels(answerUrl)]);
    let inside = 0, outside = 0, holes = 0;
    for (let i = 0; i < img.d.length; i += 4) {
      const hole = mask.d[i] > 127;
      holes += hole;
      const changed = img.d[i] !== out.d[i] || img.d[i + 1] !== out.d[i + 1] || img.d[i + 2] !== out.d[i + 2];
      if (changed && hole) inside++;
      if (changed && !hole) outside++;
    }
    return { w: out.w, h: out.h, holes, inside, outside };
  }, imageUrl, maskUrl, answerUrl);
}

// A stroke with mouse events from (fx, fy) to (tx, ty), fractions of the canvas; resolves to the
// response of the fill it starts.
async function stroke(page, fx, fy, tx, ty) {
  const box = await page.$eval("#view", (c) => { const r = c.getBoundingClientRect(); return { x: r.left, y: r.top, w: r.width, h: r.height }; });
  const answer = page.waitForResponse((r) => r.url().endsWith("/api/v1/inpaint"));
  await page.mouse.move(box.x + box.w * fx, box.y + box.h * fy);
  await page.mouse.down();
  await page.mouse.move(box.x + box.w * tx, box.y + box.h * ty, { steps: 8 });
  await page.mouse.up();
  return answer;
}

const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(e.message));
  await page.setViewport({ width: 1000, height: 800 });
  await page.goto(url, { waitUntil: "load" });
  const cdp = await page.createCDPSession();
  await cdp.send("Browser.setDownloadBehavior", { behavior: "allow", downloadPath: dir });

  let firstSent = null;
  for (const [file, width, height] of [["photo.png", 96, 64], ["rotated.jpg", 32, 48], ["photo.webp", 96, 64]]) {
    // Open through the file chooser, as a user does.
    const [chooser] = await Promise.all([page.waitForFileChooser(), page.click("label:has(#open)")]);
    await chooser.accept([path.join(dir, file)]);
    await page.waitForFunction(() => /^\d+×\d+:/.test(document.getElementById("message").textContent));
    const shown = await page.$eval("#message", (e) => e.textContent);
    if (!shown.startsWith(width + "×" + height + ":")) fail(file + ": opened as " + shown + ", expected " + width + "×" + height);

    // A stroke across the middle; the fill starts when it ends.
    const response = await stroke(page, 0.3, 0.5, 0.7, 0.5);
    if (response.status() !== 200) fail(file + ": the server answered " + response.status());
    const sent = JSON.parse(response.request().postData());
    firstSent = firstSent || sent;
    const type = response.headers()["content-type"];
    // The answer's bytes: DevTools does not keep a fetch() body the page has read, so the same
    // request is sent again (the stand-in inpainter is deterministic).
    const again = await fetch(url + "api/v1/inpaint", { method: "POST", headers: { "Content-Type": "application/json" },
                                                        body: response.request().postData() });
    const body = Buffer.from(await again.arrayBuffer());
    if (body.length === 0) fail(file + ": empty answer");
    const answerUrl = "data:" + type + ";base64," + body.toString("base64");
    const c = await compare(page, sent.image, sent.mask, answerUrl);
    if (c.w !== width || c.h !== height) fail(file + ": answer is " + c.w + "×" + c.h);
    if (c.holes === 0 || c.inside === 0) fail(file + ": the stroke's pixels did not change (" + JSON.stringify(c) + ")");
    if (c.outside !== 0) fail(file + ": " + c.outside + " pixels outside the stroke changed");
    await page.waitForFunction(() => document.getElementById("message").textContent.startsWith("Done in"));
    say(file + ": " + width + "×" + height + ", " + c.inside + " of " + c.holes + " stroke pixels changed, none outside");
  }

  // Undo steps back to before the last fill, redo forward again.
  const enabled = (id) => page.$eval("#" + id, (b) => !b.disabled);
  await page.click("#undo");
  if (!(await enabled("redo"))) fail("undo did not enable redo");
  await page.click("#redo");
  if (await enabled("redo")) fail("redo did not step forward");
  say("undo and redo");

  // Download: the result as PNG.
  await page.click("#download");
  const target = path.join(dir, "photo-inpainted.png");
  // Until the file is there with the same non-zero size twice in a row: under the sanitizers
  // Chromium can still be writing it when it first appears.
  const sizeOf = (f) => (fs.existsSync(f) ? fs.statSync(f).size : 0);
  for (let i = 0, last = -1; i < 400; i++) {
    const size = sizeOf(target);
    if (size > 0 && size === last) break;
    last = size;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!fs.existsSync(target)) fail("download wrote no " + target);
  const head = fs.readFileSync(target).subarray(0, 8).toString("latin1");
  if (head !== "\x89PNG\r\n\x1a\n") fail("the download is not a PNG");
  say("download");

  // The page keeps a Socket.IO session: the server counts it as a connected client.
  const clients = await (await fetch(url + "api/v1/connected_clients")).json();
  if (clients.count < 1) fail("connected_clients does not count the page: " + JSON.stringify(clients));
  say("counted as a connected client");

  // The texture box: off by default (the server's default is none), and its state goes with
  // the next stroke's request.
  if (firstSent.texture !== "none") fail("the first request's texture is " + JSON.stringify(firstSent.texture) + ", not \"none\"");
  await page.click("#texture");
  const texturedResponse = await stroke(page, 0.5, 0.2, 0.5, 0.8);
  if (texturedResponse.status() !== 200) fail("with texture ticked the server answered " + texturedResponse.status());
  const texturedSent = JSON.parse(texturedResponse.request().postData());
  if (texturedSent.texture !== "transfer") fail("with texture ticked the request's texture is " + JSON.stringify(texturedSent.texture));
  await page.waitForFunction(() => document.getElementById("message").textContent.startsWith("Done in"));
  say("the texture box goes with the request (none, then transfer)");

  if (errors.length) fail("console errors: " + errors.join(" | "));
  say("no console errors");
} finally {
  await browser.close();
}
