// IOPaint's own web app (Sanster/IOPaint, web_app/, built with Vite) in headless Chromium against
// a running inpaint-serve, driven as a user drives it. Run by scripts/iopaint-webapp-check, which
// builds the web app and starts the server (with --input DIR --output-dir OUT --model-dir MODELS):
//   node scripts/iopaint_webapp_check.mjs URL WORKDIR OUTDIR SHOTS [API]
// URL serves the web app's dist/ with /api/v1 and /socket.io/ reaching inpaint-serve (same origin),
// or, with API (e.g. http://127.0.0.1:8080), its Vite dev server built with VITE_BACKEND=API.
// WORKDIR holds photo.jpg (opened through the upload button). Checks, one line each:
//   the app starts (server-config, model, Socket.IO connected) with no console errors;
//   a JPEG and a PNG opened, a stroke painted with mouse events, the fill comes back at the
//   photo's size, in the photo's type, changed inside the stroke and (PNG) bit-exact outside it,
//   (JPEG, re-encoded at quality 100) within a few levels outside it;
//   a second stroke on the result (the app re-sends its last render labelled with the file's type);
//   undo/redo; the model switched in Settings; the file manager lists --input and opens a photo;
//   saving (Save Image with enableAutoSaving) writes the result into --output-dir.
// With --input FILE instead of a folder: the app opens it at start, fills a stroke, and saves
// the result under the file's name (and nothing else is checked).
// Exits 1 at the first failure with the reason; screenshots of each step go to SHOTS.
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(path.join(root, "tests/browser/package.json"));
const puppeteer = require("puppeteer-core");

const [url, work, outDir, shots, apiBase = ""] = process.argv.slice(2);
const chromium = process.env.PCONV_CHROMIUM || "/usr/bin/chromium";
const say = (what) => console.log("iopaint-webapp: " + what);
let browser;
const fail = async (why) => {
  console.error("iopaint-webapp: FAILED: " + why);
  if (browser) await browser.close();
  process.exit(1);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Console errors the web app logs against IOPaint itself too, so not the server's fault:
// with --input a folder, GET /api/v1/inputimage is IOPaint's 404.
const expected = [/inputimage/];
const errors = [];
const answers = [];  // every /api/ and /socket.io/ answer: [status, method, url]

browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const page = await browser.newPage();
page.on("console", (m) => { if (m.type() === "error") errors.push(m.text() + " @ " + (m.location()?.url ?? "")); });
page.on("pageerror", (e) => errors.push("pageerror: " + e.message));
page.on("requestfailed", (r) => {
  // A long poll cut short when the page goes is not an error.
  if (!r.url().includes("/socket.io/")) errors.push("request failed: " + r.url() + " " + r.failure()?.errorText);
});
const events = [];  // Socket.IO events the app's client received
page.on("response", async (r) => {
  if (/\/(api\/v1|socket\.io)\//.test(r.url())) answers.push([r.status(), r.request().method(), r.url()]);
  if (r.url().includes("/socket.io/") && r.request().method() === "GET") {
    const text = await r.text().catch(() => "");
    for (const m of text.matchAll(/42\["(\w+)"/g)) events.push(m[1]);
  }
});
const checkErrors = async (when) => {
  const bad = errors.filter((e) => !expected.some((x) => x.test(e)));
  if (bad.length) await fail(when + ": console errors:\n  " + bad.join("\n  "));
  const refused = answers.filter(([s, , u]) => s >= 400 && !expected.some((x) => x.test(u)));
  if (refused.length) await fail(when + ": refused requests:\n  " + refused.map((a) => a.join(" ")).join("\n  "));
};
let shot = 0;
const snap = (name) => page.screenshot({ path: path.join(shots, String(++shot).padStart(2, "0") + "-" + name + ".png") });

// Clicks the button holding lucide's icon NAME (IOPaint's buttons have no labels, only tooltips).
const clickIcon = async (name) => {
  const button = await page.waitForSelector(`button:has(svg.lucide-${name})`, { timeout: 10000 });
  await button.click();
};
// Clicks, with the mouse (Radix's tabs answer mousedown, not click()), the innermost visible
// element whose text is exactly TEXT.
const clickText = async (text, selector = "*") => {
  const at = await page.evaluate((text, selector) => {
    const all = [...document.querySelectorAll(selector)].filter((e) => e.textContent.trim() === text && e.offsetParent !== null);
    const inner = all.filter((e) => !all.some((o) => o !== e && e.contains(o)));
    if (!inner.length) return null;
    const r = inner[inner.length - 1].getBoundingClientRect();
    return { x: r.left + r.width / 2, y: r.top + r.height / 2 };
  }, text, selector);
  if (!at) await fail("no element reads '" + text + "'");
  await page.mouse.click(at.x, at.y);
};

// Pixels of a URL (data:, blob:, http:) decoded in the page.
async function compare(imageUrl, maskUrl, answerUrl) {
  return page.evaluate(async (imageUrl, maskUrl, answerUrl) => {
    const pixels = async (u) => {
      const b = await createImageBitmap(await (await fetch(u)).blob(), { colorSpaceConversion: "none" });
      const c = new OffscreenCanvas(b.width, b.height);
      const g = c.getContext("2d");
      g.drawImage(b, 0, 0);
      return { w: b.width, h: b.height, d: g.getImageData(0, 0, b.width, b.height).data };
    };
    const [img, mask, out] = await Promise.all([pixels(imageUrl), pixels(maskUrl), pixels(answerUrl)]);
    if (img.w !== out.w || img.h !== out.h || mask.w !== img.w || mask.h !== img.h)
      return { w: out.w, h: out.h, iw: img.w, ih: img.h, mw: mask.w, mh: mask.h };
    let holes = 0, inside = 0, outside = 0, outsideMax = 0, insideSum = 0;
    for (let i = 0; i < img.d.length; i += 4) {
      // IOPaint's rule: grey > 127, alpha ignored, is a hole (the web app's mask is its brush colour
      // #ffcc00 at alpha 0xbb on transparent, so its anti-aliased rim is a hole too).
      const grey = (mask.d[i] * 299 + mask.d[i + 1] * 587 + mask.d[i + 2] * 114) / 1000;
      const hole = grey > 127;
      holes += hole;
      const diff = Math.max(Math.abs(img.d[i] - out.d[i]), Math.abs(img.d[i + 1] - out.d[i + 1]),
                            Math.abs(img.d[i + 2] - out.d[i + 2]));
      if (hole) { insideSum += diff; if (diff > 0) inside++; }
      else { if (diff > 0) outside++; outsideMax = Math.max(outsideMax, diff); }
    }
    return { w: out.w, h: out.h, iw: img.w, ih: img.h, holes, inside, outside, outsideMax, insideMean: insideSum / Math.max(holes, 1) };
  }, imageUrl, maskUrl, answerUrl);
}

// The editor's canvas (the top one takes the mouse).
const canvasBox = async () => page.$$eval("canvas", (cs) => {
  const r = cs[cs.length - 1].getBoundingClientRect();
  return { x: r.left, y: r.top, w: r.width, h: r.height, cw: cs[cs.length - 1].width, ch: cs[cs.length - 1].height };
});

// Paints a horizontal stroke at height FY (a fraction) and returns the /inpaint request and the
// image the app then shows (the last blob: <img>), with the pixel comparison.
// EXPECT: the answer's type, when not the one the image was sent labelled with.
async function strokeAndFill(what, fy, lossless, expect) {
  const box = await canvasBox();
  const answer = page.waitForResponse((r) => r.url().endsWith("/api/v1/inpaint") && r.request().method() === "POST", { timeout: 120000 });
  await page.mouse.move(box.x + box.w * 0.3, box.y + box.h * fy);
  await page.mouse.down();
  await page.mouse.move(box.x + box.w * 0.7, box.y + box.h * fy, { steps: 10 });
  await page.mouse.up();
  const response = await answer;
  if (response.status() !== 200) await fail(what + ": /api/v1/inpaint answered " + response.status() + " " + (await response.text().catch(() => "")));
  const sent = JSON.parse(response.request().postData());
  // The app draws its new render on the image canvas (the first) once it stops pulsing.
  await page.waitForFunction(() => { const cs = document.querySelectorAll("canvas"); return !cs[cs.length - 1].className.includes("animate-pulse"); },
                             { timeout: 30000 });
  await sleep(700);
  const shown = await page.$eval("canvas", (c) => c.toDataURL("image/png"));
  const c = await compare(sent.image, sent.mask, shown);
  const type = response.headers()["content-type"];
  const sentType = sent.image.slice(5, sent.image.indexOf(";"));
  say(`${what}: ${c.w}×${c.h} ${type} (sent ${sentType}, X-Seed ${response.headers()["x-seed"]}), ${c.holes} hole pixels, ` +
      `${c.inside} changed (mean ${c.insideMean?.toFixed(1)}), outside ${c.outside} changed (max ${c.outsideMax})`);
  if (c.w !== c.iw || c.h !== c.ih || c.holes === undefined) await fail(what + ": sizes differ: " + JSON.stringify(c));
  if (c.w !== box.cw || c.h !== box.ch) await fail(what + ": the answer is " + c.w + "×" + c.h + ", the photo " + box.cw + "×" + box.ch);
  if (type !== (expect ?? sentType)) await fail(what + ": sent " + sentType + ", answered " + type + (expect ? ", expected " + expect : ""));
  if (c.holes < 100 || c.inside < c.holes * 0.5) await fail(what + ": the stroke's pixels did not change");
  if (lossless ? c.outside !== 0 : c.outsideMax > 8) await fail(what + ": pixels outside the stroke changed");
  await snap(what.replace(/\W+/g, "-"));
  return { sent, shown, type };
}

async function openPhoto(file, w, h) {
  const input = await page.$("input[type=file]");
  await input.uploadFile(file);
  await page.waitForFunction((w, h) => { const cs = document.querySelectorAll("canvas"); return cs.length && cs[cs.length - 1].width === w && cs[cs.length - 1].height === h; },
                             { timeout: 20000 }, w, h);
  await sleep(500);
}

try {
  await page.setViewport({ width: 1280, height: 900 });
  await page.goto(url, { waitUntil: "networkidle2", timeout: 60000 });
  await page.waitForFunction(() => document.querySelector("button:has(svg.lucide-settings)"), { timeout: 20000 });
  // Socket.IO: the app's client connects to the same origin (a handshake, "40", then polls).
  const deadline = Date.now() + 10000;
  while (!answers.some(([s, m, u]) => s === 200 && m === "POST" && u.includes("/socket.io/")) && Date.now() < deadline) await sleep(200);
  const sio = answers.filter(([, , u]) => u.includes("/socket.io/"));
  if (!sio.some(([s, m]) => s === 200 && m === "POST")) await fail("Socket.IO did not connect: " + JSON.stringify(sio));
  const clients = await page.evaluate(async (api) => (await (await fetch(api + "/api/v1/connected_clients")).json()).count, apiBase);
  if (clients < 1) await fail("connected_clients counts " + clients + " with the app open");
  await snap("start");
  await checkErrors("start");
  say("the app starts: server-config, model, Socket.IO connected (connected_clients " + clients + ")");

  // With --input FILE (IOPaint's `iopaint start --input photo.jpg`): the app opens it at start
  // (GET /api/v1/inputimage), and saving writes the result under its name.
  const input = await page.evaluate(async (api) => {
    const r = await fetch(api + "/api/v1/inputimage");
    return { status: r.status, type: r.headers.get("content-type"), name: r.headers.get("content-disposition") };
  }, apiBase);
  if (input.status === 200 && input.type.startsWith("image/")) {
    const name = input.name?.split("filename=")[1]?.split(";")[0];
    await page.waitForFunction(() => { const cs = document.querySelectorAll("canvas"); return cs.length && cs[cs.length - 1].width > 0; }, { timeout: 20000 });
    await sleep(500);
    const box = await canvasBox();
    say("--input FILE: the app opened " + name + " (" + input.type + ") at start, " + box.cw + "×" + box.ch);
    // The app makes the File without a type (as against IOPaint): it sends it labelled
    // application/octet-stream, and the answer's type is the bytes'.
    await strokeAndFill("--input FILE stroke", 0.5, !input.type.includes("jpeg"), input.type);
    const saved = page.waitForResponse((r) => r.url().endsWith("/api/v1/save_image") && r.request().method() === "POST", { timeout: 20000 });
    await clickIcon("download");
    if ((await saved).status() !== 200) await fail("save_image refused");
    await sleep(300);
    if (!name || !fs.existsSync(path.join(outDir, name))) await fail("save_image wrote no " + name + " (" + fs.readdirSync(outDir).join(", ") + ")");
    say("--input FILE: saved as " + path.join(outDir, name));
    await checkErrors("--input FILE");

    // A refusal shows in the app's toast: a photo twice the size, over a --max-megapixels the
    // first fits under (the wrapper starts this server so), gets the server's `errors` line.
    const limit = (await page.evaluate(async (api) => (await fetch(api + "/api/v1/server-config")).json(), apiBase)).pconv?.max_pixels;
    if (limit && limit < 4 * box.cw * box.ch) {
      const big = await page.evaluate(async (w, h) => {
        const c = new OffscreenCanvas(w, h);
        const g = c.getContext("2d");
        g.fillStyle = "#3a6"; g.fillRect(0, 0, w, h); g.fillStyle = "#c33"; g.fillRect(w / 4, h / 4, w / 2, h / 2);
        const bytes = new Uint8Array(await (await c.convertToBlob({ type: "image/png" })).arrayBuffer());
        let s = "";
        for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode(...bytes.subarray(i, i + 8192));
        return btoa(s);
      }, box.cw * 2, box.ch * 2);
      const bigFile = path.join(work, "big.png");
      fs.writeFileSync(bigFile, Buffer.from(big, "base64"));
      await openPhoto(bigFile, box.cw * 2, box.ch * 2);
      const b = await canvasBox();
      const refused = page.waitForResponse((r) => r.url().endsWith("/api/v1/inpaint") && r.request().method() === "POST", { timeout: 60000 });
      await page.mouse.move(b.x + b.w * 0.3, b.y + b.h * 0.5);
      await page.mouse.down();
      await page.mouse.move(b.x + b.w * 0.7, b.y + b.h * 0.5, { steps: 10 });
      await page.mouse.up();
      const r = await refused;
      const errorsLine = JSON.parse(await r.text().catch(() => "{}")).errors;
      await page.waitForFunction((t) => document.body.innerText.includes(t), { timeout: 10000 }, String(errorsLine))
        .catch(async () => fail("the toast does not show the server's errors line '" + errorsLine + "': " +
                                await page.evaluate(() => document.body.innerText)));
      await snap("refusal-toast");
      if (/undefined/.test(await page.evaluate(() => document.body.innerText))) await fail("the toast reads 'undefined'");
      say("a refusal (" + r.status() + ") shows in the app's toast: " + errorsLine);
    }
    say("OK");
    await browser.close();
    process.exit(0);
  }

  // A JPEG photo, opened through the upload button; its size as decoded by the browser.
  const jpg = path.join(work, "photo.jpg");
  const size = await page.evaluate(async (b64) => {
    const b = await createImageBitmap(await (await fetch("data:image/jpeg;base64," + b64)).blob());
    return [b.width, b.height];
  }, fs.readFileSync(jpg).toString("base64"));
  await openPhoto(jpg, size[0], size[1]);
  await strokeAndFill("JPEG stroke", 0.5, false);
  // "Rerun previous mask": the same stroke again on the photo as opened.
  {
    const again = page.waitForResponse((r) => r.url().endsWith("/api/v1/inpaint") && r.request().method() === "POST", { timeout: 120000 });
    await clickIcon("rotate-cw");
    const r = await again;
    if (r.status() !== 200) await fail("rerun: /api/v1/inpaint answered " + r.status());
    await page.waitForFunction(() => { const cs = document.querySelectorAll("canvas"); return !cs[cs.length - 1].className.includes("animate-pulse"); }, { timeout: 30000 });
    say("rerun previous mask: 200 " + r.headers()["content-type"]);
  }
  // A second stroke: the app sends its last render (the JPEG answer) as the image.
  await strokeAndFill("JPEG second stroke on the result", 0.25, false);
  await checkErrors("JPEG");

  // Undo and redo: the app's own history (no request), then the render is back.
  await page.keyboard.down("Control"); await page.keyboard.press("z"); await page.keyboard.up("Control");
  await sleep(500);
  await page.keyboard.down("Control"); await page.keyboard.down("Shift"); await page.keyboard.press("z");
  await page.keyboard.up("Shift"); await page.keyboard.up("Control");
  await sleep(500);
  say("undo/redo: done");

  // Save with enableAutoSaving: POST /api/v1/save_image, the file named as opened, into --output-dir.
  const saved = page.waitForResponse((r) => r.url().endsWith("/api/v1/save_image") && r.request().method() === "POST", { timeout: 20000 });
  await clickIcon("download");
  const saveAnswer = await saved;
  if (saveAnswer.status() !== 200) await fail("save_image answered " + saveAnswer.status());
  await sleep(300);
  const savedFile = path.join(outDir, "photo.jpg");
  if (!fs.existsSync(savedFile)) await fail("save_image wrote no " + savedFile + " (" + fs.readdirSync(outDir).join(", ") + ")");
  const savedBytes = fs.readFileSync(savedFile);
  if (!(savedBytes[0] === 0xff && savedBytes[1] === 0xd8)) await fail("the saved photo.jpg is not a JPEG");
  say("save: " + savedFile + " (" + savedBytes.length + " bytes, JPEG)");
  await checkErrors("save");

  // A PNG (the photo re-encoded by the browser), for a bit-exact check outside the stroke.
  const pngFile = path.join(work, "photo.png");
  const png = await page.evaluate(async (b64) => {
    const b = await createImageBitmap(await (await fetch("data:image/jpeg;base64," + b64)).blob());
    const c = new OffscreenCanvas(b.width, b.height);
    c.getContext("2d").drawImage(b, 0, 0);
    const blob = await c.convertToBlob({ type: "image/png" });
    const bytes = new Uint8Array(await blob.arrayBuffer());
    let s = "";
    for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode(...bytes.subarray(i, i + 8192));
    return btoa(s);
  }, fs.readFileSync(jpg).toString("base64"));
  fs.writeFileSync(pngFile, Buffer.from(png, "base64"));
  await openPhoto(pngFile, size[0], size[1]);
  await strokeAndFill("PNG stroke", 0.6, true);
  await checkErrors("PNG");

  // A phone photo: the JPEG with EXIF orientation 6 (an APP1 segment after JFIF's APP0). The
  // browser shows it turned (height × width) and the app's mask is drawn on it so.
  const jpegBytes = fs.readFileSync(jpg);
  const tiff = Buffer.from("49492a000800000001001201030001000000060000000000000000", "hex");
  const app1 = Buffer.concat([Buffer.from([0xff, 0xe1, 0, 2 + 6 + tiff.length]), Buffer.from("Exif\0\0", "binary"), tiff]);
  const at = jpegBytes[3] === 0xe0 ? 4 + jpegBytes.readUInt16BE(4) : 2;  // after APP0, if any
  const rotated = path.join(work, "rotated.jpg");
  fs.writeFileSync(rotated, Buffer.concat([jpegBytes.subarray(0, at), app1, jpegBytes.subarray(at)]));
  await openPhoto(rotated, size[1], size[0]);
  await strokeAndFill("EXIF-rotated JPEG stroke", 0.5, false);
  await checkErrors("rotated JPEG");

  // A WebP (the browser's own encoder, from the PNG).
  const webp = await page.evaluate(async (b64) => {
    const b = await createImageBitmap(await (await fetch("data:image/png;base64," + b64)).blob());
    const c = new OffscreenCanvas(b.width, b.height);
    c.getContext("2d").drawImage(b, 0, 0);
    const blob = await c.convertToBlob({ type: "image/webp", quality: 1 });
    const bytes = new Uint8Array(await blob.arrayBuffer());
    let s = "";
    for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode(...bytes.subarray(i, i + 8192));
    return [blob.type, btoa(s)];
  }, png);
  if (webp[0] !== "image/webp") {
    say("WebP: skipped (this Chromium encodes no WebP)");
  } else {
    const webpFile = path.join(work, "photo.webp");
    fs.writeFileSync(webpFile, Buffer.from(webp[1], "base64"));
    await openPhoto(webpFile, size[0], size[1]);
    await strokeAndFill("WebP stroke", 0.4, false);
    await checkErrors("WebP");
  }

  // The model switch: Settings → Model → the other model → Ok.
  const config = await page.evaluate(async (api) => (await fetch(api + "/api/v1/server-config")).json(), apiBase);
  const current = await page.evaluate(async (api) => (await (await fetch(api + "/api/v1/model")).json()).name, apiBase);
  const other = config.modelInfos.map((m) => m.name).find((n) => n !== current);
  if (!other) {
    say("model switch: skipped (server-config lists one model; start inpaint-serve with --model-dir)");
  } else {
    await clickIcon("settings");
    await page.waitForFunction((n) => [...document.querySelectorAll("div")].some((d) => d.textContent.trim() === n), { timeout: 10000 }, other);
    await snap("settings");
    await clickText(other, "div");
    const switched = page.waitForResponse((r) => r.url().endsWith("/api/v1/model") && r.request().method() === "POST", { timeout: 60000 });
    await clickText("Ok", "button");
    const answer = await switched;
    if (answer.status() !== 200) await fail("POST /api/v1/model answered " + answer.status());
    const now = await page.evaluate(async (api) => (await (await fetch(api + "/api/v1/model")).json()).name, apiBase);
    if (now !== other) await fail("after switching to " + other + " the server's model is " + now);
    await sleep(1000);
    await snap("switched");
    say("model switch: " + current + " → " + other + " (POST /api/v1/model 200)");
    await page.keyboard.press("Escape");
    await sleep(500);
    await strokeAndFill("stroke with " + other, 0.3, true);
    await checkErrors("model switch");
  }

  // The file manager (--input DIR): lists the folder with thumbnails, opens a photo.
  if (!config.enableFileManager) {
    say("file manager: skipped (start inpaint-serve with --input DIR)");
  } else {
    await clickIcon("folder-closed");
    await page.waitForFunction(() => [...document.querySelectorAll("img")].some((i) => i.src.includes("/api/v1/media_thumbnail_file") && i.complete && i.naturalWidth > 0),
                               { timeout: 20000 });
    await sleep(500);
    await snap("file-manager");
    const thumbs = await page.$$eval("img", (is) => is.filter((i) => i.src.includes("/api/v1/media_thumbnail_file")).map((i) => [i.src, i.naturalWidth, i.naturalHeight]));
    say("file manager: " + thumbs.length + " thumbnails, e.g. " + thumbs[0][1] + "×" + thumbs[0][2]);
    const opened = page.waitForResponse((r) => r.url().includes("/api/v1/media_file?"), { timeout: 20000 });
    await page.click("img[src*='/api/v1/media_thumbnail_file']");
    const file = await opened;
    if (file.status() !== 200) await fail("media_file answered " + file.status());
    const name = decodeURIComponent(new URL(file.url()).searchParams.get("filename"));
    await sleep(1500);
    const box = await canvasBox();
    say("file manager: opened " + name + " (" + file.headers()["content-type"] + "), shown " + box.cw + "×" + box.ch);
    await strokeAndFill("file-manager photo stroke", 0.5, !/\.jpe?g$/i.test(name));
    // The output tab lists what was saved.
    await clickIcon("folder-closed");
    await sleep(500);
    await clickText("Output Directory", "button");
    await page.waitForFunction(() => [...document.querySelectorAll("img")].some((i) => i.src.includes("tab=output") && i.complete && i.naturalWidth > 0), { timeout: 20000 });
    await snap("file-manager-output");
    say("file manager: the output tab lists the saved photo");
    await page.keyboard.press("Escape");
    await checkErrors("file manager");
  }
  const count = (e) => events.filter((x) => x === e).length;
  say("Socket.IO events received: " + count("diffusion_progress") + " diffusion_progress, " + count("diffusion_finish") + " diffusion_finish");
  if (!count("diffusion_finish")) await fail("the app's Socket.IO client received no diffusion_finish");
  await checkErrors("end");
  say("OK");
} catch (e) {
  await snap("failure").catch(() => {});
  await fail(e.stack || String(e));
}
await browser.close();
