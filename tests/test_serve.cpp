// inpaint-serve: base64, request checking without sockets (every truncation of a good body),
// the job queue, and the server through a real HTTP client (cpp-httplib) on a loopback port:
// the same pixels as inpaint-run, every bad request's status and message, 8 concurrent
// requests, a full queue (503), the time limit, stopping, the page; then the binary itself
// (its URL, Ctrl-C, one-line errors).
#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <thread>

#include "apps/inference/bundled_model.h"
#include "apps/serving/base64.h"
#include "apps/serving/inpaint_server.h"
#include "apps/serving/job_queue.h"
#include "apps/serving/page.h"
#include "tests/serve_util.h"
#include "models/texture_transfer.h"
#include "tests/test_util.h"

using namespace pconv;
using namespace std::chrono_literals;
using nlohmann::json;
using testing::quote;
using testing::random_image;
using testing::read_bytes;

namespace {

PConvUNetConfig tiny() {
  PConvUNetConfig c;
  c.levels = 3;
  c.width = 4;
  return c;
}

MaskImage box_mask(int64_t h, int64_t w, int64_t x0, int64_t y0, int64_t x1, int64_t y1) {
  MaskImage m(h, w);
  for (int64_t y = y0; y < y1; ++y)
    for (int64_t x = x0; x < x1; ++x) m.set_hole(y, x);
  return m;
}

ImageU8 mask_png_image(const MaskImage& m) {  // white holes on black, as painting tools make them
  ImageU8 img;
  img.width = int(m.width), img.height = int(m.height), img.channels_in_file = 3;
  for (float k : m.known) img.rgb.insert(img.rgb.end(), 3, k < 0.5f ? 255 : 0);
  return img;
}

std::string body(const std::string& image_b64, const std::string& mask_b64, json extra = json::object()) {
  extra["image"] = image_b64;
  extra["mask"] = mask_b64;
  return extra.dump();
}

std::string body(const ImageU8& image, const MaskImage& mask, json extra = json::object()) {
  return body(base64_encode(encode_png(image)), base64_encode(encode_png(mask_png_image(mask))), std::move(extra));
}

// A server on 127.0.0.1 and a free port, serving from its own thread.
struct TestServer : testing::RunningServer {
  TestServer(serve::Inpainter inpainter, serve::ServerSettings settings = {})
      : RunningServer(std::make_unique<serve::InpaintServer>(std::move(inpainter),
                                                             serve::model_json("test", tiny(), "cpu"), settings),
                      120, 60) {}
};

// The answer was IOPaint's {"error", "detail", "body", "errors"}, with the one-line message
// holding needle in "detail" and "errors", and this status.
void check_error(const httplib::Result& r, int status, const std::string& needle) {
  REQUIRE(r);
  CAPTURE(r->body);
  CHECK(r->status == status);
  CHECK(r->get_header_value("Content-Type") == "application/json");
  const json j = json::parse(r->body, nullptr, false);
  REQUIRE(j.is_object());
  REQUIRE(j.contains("errors"));
  CHECK(j["error"] == "HTTPException");
  CHECK(j["body"] == "");
  const std::string message = j["errors"].get<std::string>();
  CHECK(j["detail"] == message);
  CHECK(message.find(needle) != std::string::npos);
  CHECK(message.find('\n') == std::string::npos);
}

httplib::Result post(httplib::Client& client, const std::string& text) {
  return client.Post("/api/v1/inpaint", text, "application/json");
}
httplib::Result post(httplib::Client&& client, const std::string& text) { return post(client, text); }

ImageU8 decode_answer(const httplib::Result& r) {
  REQUIRE(r);
  CAPTURE(r->body.substr(0, 200));
  REQUIRE(r->status == 200);
  CHECK(r->get_header_value("Content-Type") == "image/png");
  return decode_image_u8(r->body, "answer", kMaxImagePixels, ImageAlpha::Keep);
}

// A model saved to a file (for inpaint-run and the binary) and loaded for the server.
struct Model {
  std::string dir, path;
  std::shared_ptr<PConvUNet> net;
  explicit Model(const std::string& name) : dir(testing::scratch_dir(name)), path(dir + "/model.safetensors") {
    PConvUNet(tiny(), 5).save_checkpoint(path);
    net = inference::load_model(path);
  }
};

}  // namespace

// ---------------------------------------------------------------- without sockets

TEST_CASE("serve: base64 round-trips, matches RFC 4648 and refuses what is not base64") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  CHECK(base64_decode("Zm9vYmE=") == "fooba");
  CHECK(base64_decode("Zm9vYmE") == "fooba");  // padding is optional
  CHECK(base64_decode("Zm9v\r\nYmFy\n") == "foobar");
  for (size_t n = 0; n < 70; ++n) {
    std::string bytes;
    for (size_t i = 0; i < n; ++i) bytes += char((i * 97 + n * 13) & 255);
    REQUIRE(base64_decode(base64_encode(bytes)) == bytes);
  }
  CHECK_THROWS_WITH_AS(base64_decode("Zm9v!"), "not valid base64: '!' at offset 4", Error);
  CHECK_THROWS_WITH_AS(base64_decode("Zm9vY"), "not valid base64: the last group has 1 character", Error);
  CHECK_THROWS_WITH_AS(base64_decode("Zg=a"), "not valid base64: 'a' at offset 3 after the '=' padding", Error);
  CHECK_THROWS_WITH_AS(base64_decode("Zg="), "not valid base64: 1 '=' do not complete the last group", Error);
  CHECK_THROWS_AS(base64_decode("===="), Error);
  CHECK(strip_data_url("data:image/png;base64,QUJD") == "QUJD");
  CHECK(strip_data_url("QUJD") == "QUJD");
  CHECK_THROWS_WITH_AS(strip_data_url("data:text/plain,hello"),
                       "the data URL 'data:text/plain' is not base64 (no ';base64')", Error);
}

TEST_CASE("serve: request checking never accepts a broken body and never throws anything but ApiError") {
  const ImageU8 img = random_image(24, 16, 1);
  const std::string good = body(img, box_mask(16, 24, 4, 4, 12, 10), {{"hd_strategy", "Resize"}});
  const serve::Limits limits;
  const serve::InpaintRequest r = serve::parse_inpaint_request(good, limits, {});
  CHECK(r.image.rgb == img.rgb);
  CHECK(r.hd.strategy == inference::HdStrategy::Resize);
  CHECK(hole_ratio(r.mask) == doctest::Approx(48.0 / 384.0));
  // Every truncation of the body, and bytes flipped one at a time, get a 400 or pass as a
  // valid request (a flip inside base64 padding can), never another exception.
  for (size_t n = 0; n < good.size(); n += 7) {
    try {
      serve::parse_inpaint_request(good.substr(0, n), limits, {});
      FAIL("a truncated body was accepted: " << n << " of " << good.size() << " bytes");
    } catch (const serve::ApiError& e) {
      REQUIRE(e.status == 400);
    }
  }
  for (size_t i = 0; i < good.size(); i += 5) {
    std::string bad = good;
    bad[i] = char(bad[i] ^ 0x5a);
    try {
      serve::parse_inpaint_request(bad, limits, {});
    } catch (const serve::ApiError& e) {
      REQUIRE((e.status == 400 || e.status == 413));
    }
  }
}

TEST_CASE("serve: numeric HD options take whole numbers in range, and nothing out of range is cast") {
  const ImageU8 img = random_image(24, 16, 1);
  const MaskImage mask = box_mask(16, 24, 4, 4, 12, 10);
  auto margin = [&](const nlohmann::json& v) {
    return serve::parse_inpaint_request(body(img, mask, {{"hd_strategy_crop_margin", v}}), {}, {}).hd.crop_margin;
  };
  CHECK(margin(16) == 16);
  CHECK(margin(800.0) == 800);  // IOPaint's clients may send whole floats
  CHECK(margin(uint64_t(7)) == 7);
  // Out of range or not whole: a 400, never a conversion (1e300 or NaN cast to int64 is UB).
  for (const nlohmann::json& v : {nlohmann::json(1e300), nlohmann::json(-1e300), nlohmann::json(2.5),
                                 nlohmann::json(1e10), nlohmann::json(uint64_t(1) << 63), nlohmann::json(-0.5)}) {
    CAPTURE(v.dump());
    CHECK_THROWS_WITH_AS(margin(v), doctest::Contains("'hd_strategy_crop_margin' must be an integer >= 0"),
                         serve::ApiError);
  }
}

TEST_CASE("serve: the job queue runs one job at a time, refuses when full, and tells cancelled jobs") {
  JobQueue queue(2);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> started{0}, finished{0};
  std::atomic<bool> saw_cancel{false};
  auto flag = [] { return std::make_shared<std::atomic<bool>>(false); };
  auto blocking = [&](const JobQueue::Cancelled&) {
    ++started;
    released.wait();
    ++finished;
  };
  REQUIRE(queue.try_submit(blocking, flag()));
  while (started == 0) std::this_thread::sleep_for(1ms);
  const auto given_up = flag();
  REQUIRE(queue.try_submit(blocking, flag()));
  REQUIRE(queue.try_submit([&](const JobQueue::Cancelled& c) { saw_cancel = c(); }, given_up));
  CHECK(queue.waiting() == 2);
  CHECK_FALSE(queue.try_submit(blocking, flag()));  // full
  given_up->store(true);                            // its owner gave up: its place is free
  CHECK(queue.try_submit(blocking, flag()));
  CHECK(queue.waiting() == 2);
  release.set_value();
  while (finished < 3) std::this_thread::sleep_for(1ms);
  CHECK(started == 3);
  CHECK_FALSE(saw_cancel);  // dropped before it ran
  // stop(): the running job sees its flag; waiting ones run cancelled; nothing more is taken.
  std::atomic<bool> running_saw_cancel{false}, waiting_saw_cancel{false};
  std::atomic<bool> in_job{false};
  REQUIRE(queue.try_submit(
      [&](const JobQueue::Cancelled& c) {
        in_job = true;
        while (!c()) std::this_thread::sleep_for(1ms);
        running_saw_cancel = true;
      },
      flag()));
  REQUIRE(queue.try_submit([&](const JobQueue::Cancelled& c) { waiting_saw_cancel = c(); }, flag()));
  while (!in_job) std::this_thread::sleep_for(1ms);
  queue.stop();
  CHECK(running_saw_cancel);
  CHECK(waiting_saw_cancel);
  CHECK_FALSE(queue.try_submit(blocking, flag()));
}

// ---------------------------------------------------------------- through HTTP

TEST_CASE("serve: --texture transfer answers the texture_transfer of the plain composite") {
  const Model model("serve_texture");
  serve::InpaintRequest request;
  request.image = random_image(120, 80, 4);
  request.mask = box_mask(80, 120, 40, 30, 80, 50);
  const ImageU8 plain = serve::model_inpainter(model.net)(request, nullptr);
  const ImageU8 textured = serve::model_inpainter(model.net, "transfer")(request, nullptr);
  CHECK(textured.rgb == texture_transfer(plain, request.mask).rgb);
  CHECK(textured.rgb != plain.rgb);
  CHECK_THROWS_AS(serve::model_inpainter(model.net, "noise"), Error);
  // A request's own "texture" overrides the server's default, both ways.
  request.texture = "none";
  CHECK(serve::model_inpainter(model.net, "transfer")(request, nullptr).rgb == plain.rgb);
  request.texture = "transfer";
  CHECK(serve::model_inpainter(model.net)(request, nullptr).rgb == textured.rgb);
}

TEST_CASE("serve: the API's texture field reaches the model; the page's default comes from GET /api/v1/model") {
  const Model model("serve_texture_http");
  TestServer server(serve::model_inpainter(model.net));
  httplib::Client client = server.client();
  const ImageU8 img = random_image(120, 80, 4);
  const MaskImage mask = box_mask(80, 120, 40, 30, 80, 50);
  const ImageU8 plain = decode_answer(post(client, body(img, mask)));
  const ImageU8 none = decode_answer(post(client, body(img, mask, {{"texture", "none"}})));
  const ImageU8 textured = decode_answer(post(client, body(img, mask, {{"texture", "transfer"}})));
  CHECK(none.rgb == plain.rgb);
  CHECK(textured.rgb == texture_transfer(plain, mask).rgb);
  CHECK(textured.rgb != plain.rgb);
  check_error(post(client, body(img, mask, {{"texture", "noise"}})), 400,
              "'texture' must be \"none\" or \"transfer\", got \"noise\"");
  check_error(post(client, body(img, mask, {{"texture", 1}})), 400, "'texture' must be");
  // The page reads the server's default from the model description and sends its checkbox.
  const std::string page = serve::kPageHtml;
  CHECK(page.find("id=\"texture\"") != std::string::npos);
  CHECK(page.find("texture: $(\"texture\").checked ? \"transfer\" : \"none\"") != std::string::npos);
  CHECK(page.find("m.texture === \"transfer\"") != std::string::npos);
}

TEST_CASE("serve: a good request answers the pixels inpaint-run writes for the same image and mask") {
  const Model model("serve_good");
  const std::string& dir = model.dir;
  const ImageU8 img = random_image(300, 200, 2);
  const MaskImage mask = box_mask(200, 300, 30, 40, 90, 70);
  save_image(dir + "/photo.png", img);
  save_image(dir + "/mask.png", mask_png_image(mask));
  TestServer server(serve::model_inpainter(model.net));
  httplib::Client client = server.client();

  struct Case {
    const char* name;
    json fields;
    std::string run_flags;
  };
  const std::vector<Case> cases{
      {"defaults (300 px is below the crop trigger: one whole pass)", json::object(), ""},
      {"Crop", {{"hd_strategy", "Crop"}, {"hd_strategy_crop_trigger_size", 64}, {"hd_strategy_crop_margin", 16}},
       "--hd-strategy crop --hd-crop-trigger 64 --hd-crop-margin 16"},
      {"Resize", {{"hd_strategy", "Resize"}, {"hd_strategy_resize_limit", 100}},
       "--hd-strategy resize --hd-resize-limit 100"},
  };
  ImageU8 want_default;
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const auto run = testing::run_app("inpaint-run",
                                      "--model " + quote(model.path) + " --image " + quote(dir + "/photo.png") +
                                          " --mask " + quote(dir + "/mask.png") + " --out " +
                                          quote(dir + "/out.png") + " --force " + c.run_flags,
                                      dir);
    CAPTURE(run.err);
    REQUIRE(run.status == 0);
    const ImageU8 want = read_image_u8(dir + "/out.png");
    if (want_default.rgb.empty()) want_default = want;
    const ImageU8 got = decode_answer(post(client, body(img, mask, c.fields)));
    CHECK(got.rgb == want.rgb);
    // Known pixels are the input's bytes.
    for (size_t i = 0; i < mask.known.size(); ++i)
      if (mask.known[i] == 1.0f)
        REQUIRE((got.rgb[i * 3] == img.rgb[i * 3] && got.rgb[i * 3 + 2] == img.rgb[i * 3 + 2]));
  }
  // A data URL prefix (what browsers produce) reads the same.
  const std::string image_url = "data:image/png;base64," + base64_encode(encode_png(img));
  const std::string mask_url = "data:image/png;base64," + base64_encode(encode_png(mask_png_image(mask)));
  CHECK(decode_answer(post(client, body(image_url, mask_url))).rgb == want_default.rgb);
  // sd_seed (a number or a numeric string) comes back in X-Seed, as IOPaint's web app reads it.
  auto seeded = post(client, body(img, mask, {{"sd_seed", "1234"}}));
  REQUIRE(seeded);
  CHECK(seeded->get_header_value("X-Seed") == "1234");
  // RGBA comes back RGBA with the same alpha; a mask without holes returns the image.
  ImageU8 rgba = img;
  for (size_t i = 0; i < 300 * 200; ++i) rgba.alpha.push_back(uint8_t(255 - i % 7));
  const ImageU8 got_rgba = decode_answer(post(client, body(rgba, mask)));
  CHECK(got_rgba.alpha == rgba.alpha);
  const ImageU8 same = decode_answer(post(client, body(rgba, MaskImage(200, 300))));
  CHECK(same.rgb == rgba.rgb);
  CHECK(same.alpha == rgba.alpha);
}

TEST_CASE("serve: every bad request gets its status and a one-line JSON error") {
  const Model model("serve_bad");
  serve::ServerSettings settings;
  settings.limits.max_body_bytes = 200 * 1024;
  settings.limits.max_pixels = 100 * 100;
  TestServer server(serve::model_inpainter(model.net), settings);
  httplib::Client client = server.client();
  const ImageU8 img = random_image(40, 30, 3);
  const MaskImage mask = box_mask(30, 40, 5, 5, 20, 20);
  const std::string png = base64_encode(encode_png(img)), mask_png = base64_encode(encode_png(mask_png_image(mask)));
  const std::string truncated = base64_encode(encode_png(img).substr(0, 100));

  check_error(post(client, "this is not JSON"), 400, "the request body is not JSON");
  check_error(post(client, "[1, 2]"), 400, "must be a JSON object, got array");
  check_error(post(client, "{}"), 400, "the request has no 'image' field");
  check_error(post(client, json{{"image", 5}, {"mask", mask_png}}.dump()), 400, "'image' must be a base64 string, got number");
  check_error(post(client, json{{"image", png}}.dump()), 400, "the request has no 'mask' field");
  check_error(post(client, body("@@@@", mask_png)), 400, "'image': not valid base64: '@' at offset 0");
  check_error(post(client, body("", mask_png)), 400, "'image' is empty");
  check_error(post(client, body(base64_encode("hello, not an image"), mask_png)), 400,
              "image: not a readable image");
  check_error(post(client, body(truncated, mask_png)), 400, "image: not a readable image");
  check_error(post(client, body(png, base64_encode("GIF89a"))), 400, "mask: corrupt image");
  check_error(post(client, body(img, box_mask(31, 40, 0, 0, 4, 4))), 400,
              "the mask is 40×31, the image 40×30 (they must be the same size)");
  check_error(post(client, body(img, mask, {{"hd_strategy", "Tile"}})), 400, "unknown HD strategy 'Tile'");
  check_error(post(client, body(img, mask, {{"hd_strategy", 3}})), 400, "'hd_strategy' must be");
  check_error(post(client, body(img, mask, {{"hd_strategy_crop_margin", -1}})), 400,
              "'hd_strategy_crop_margin' must be an integer >= 0, got -1");
  check_error(post(client, body(img, mask, {{"hd_strategy_resize_limit", "big"}})), 400,
              "'hd_strategy_resize_limit' must be an integer >= 1, got \"big\"");
  const ImageU8 big = random_image(101, 100, 4);  // one column over 100×100 pixels
  check_error(post(client, body(big, box_mask(100, 101, 0, 0, 5, 5))), 413, "over the limit of 10000 pixels");
  check_error(post(client, std::string(300 * 1024, ' ')), 413, "the request body is over the limit of 204800 bytes");
  check_error(client.Get("/api/v1/nothing"), 404, "no such endpoint: GET /api/v1/nothing");
  check_error(client.Post("/", "{}", "application/json"), 405, "method POST is not allowed on /");
  // The server is still fine after all of that.
  CHECK(decode_answer(post(client, body(img, mask))).width == 40);
}

TEST_CASE("serve: 8 concurrent requests are all answered correctly") {
  const Model model("serve_concurrent");
  // Expected answers first, on a model of our own (one model must not run on two threads).
  const auto net = inference::load_model(model.path);
  std::vector<ImageU8> images, want;
  std::vector<MaskImage> masks;
  for (int i = 0; i < 8; ++i) {
    images.push_back(random_image(48 + 8 * i, 40, uint64_t(10 + i)));
    masks.push_back(box_mask(40, 48 + 8 * i, 4 + i, 5, 30 + i, 25));
    want.push_back(inference::inpaint(*net, images.back(), masks.back()).composite);
  }
  TestServer server(serve::model_inpainter(model.net));
  std::vector<std::future<ImageU8>> answers;
  for (int i = 0; i < 8; ++i)
    answers.push_back(std::async(std::launch::async, [&, i] {
      httplib::Client client = server.client();  // one connection each
      auto r = post(client, body(images[size_t(i)], masks[size_t(i)]));
      if (!r || r->status != 200) throw Error("request " + std::to_string(i) + " failed");
      return decode_image_u8(r->body, "answer", kMaxImagePixels, ImageAlpha::Keep);
    }));
  for (int i = 0; i < 8; ++i) {
    CAPTURE(i);
    CHECK(answers[size_t(i)].get().rgb == want[size_t(i)].rgb);
  }
}

TEST_CASE("serve: a full queue answers 503 at once, the time limit 503 later, and the server stays responsive") {
  // An inpainter that holds the worker until released (or cancelled) and then inverts the photo.
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> entered{0};
  serve::Inpainter holding = [&](const serve::InpaintRequest& r, const JobQueue::Cancelled& cancelled) {
    ++entered;
    while (released.wait_for(2ms) != std::future_status::ready)
      if (cancelled()) throw inference::Cancelled();
    ImageU8 out = r.image;
    for (auto& v : out.rgb) v = uint8_t(255 - v);
    return out;
  };
  serve::ServerSettings settings;
  settings.queue = 1;
  auto server = std::make_unique<TestServer>(holding, settings);
  const ImageU8 img = random_image(16, 16, 5);
  const std::string request = body(img, box_mask(16, 16, 2, 2, 8, 8));

  auto first = std::async(std::launch::async, [&] { return post(server->client(), request); });
  while (entered == 0) std::this_thread::sleep_for(1ms);
  auto second = std::async(std::launch::async, [&] { return post(server->client(), request); });
  httplib::Client client = server->client();
  auto waiting = [](httplib::Client& c) {
    auto r = c.Get("/api/v1/server-config");
    REQUIRE(r);
    return json::parse(r->body)["pconv"]["waiting"].get<int>();
  };
  while (waiting(client) != 1) std::this_thread::sleep_for(1ms);  // the second request is queued
  const auto t0 = std::chrono::steady_clock::now();
  check_error(post(client, request), 503, "busy: 1 inpainting requests are already waiting; try again later");
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  // The page and the config answer while the model is busy.
  auto page = client.Get("/");
  REQUIRE(page);
  CHECK(page->status == 200);
  release.set_value();
  for (auto* f : {&first, &second}) {
    const ImageU8 out = decode_answer(f->get());
    CHECK(out.rgb[0] == uint8_t(255 - img.rgb[0]));  // the inpainter's answer (no hole at 0,0:
  }                                                    // this one ignores the mask)

  // The time limit: a request still running when it ends gets 503 and its job is cancelled.
  std::promise<void> never;
  released = never.get_future().share();
  entered = 0;
  settings.timeout_s = 0.3;
  server = std::make_unique<TestServer>(holding, settings);
  const auto t1 = std::chrono::steady_clock::now();
  check_error(post(server->client(), request), 503, "did not finish within the server's time limit of 0.3 s");
  CHECK(std::chrono::steady_clock::now() - t1 < 10s);

  // Stopping: the running request and the waiting one are told, and serve() returns.
  settings.timeout_s = 60;
  server = std::make_unique<TestServer>(holding, settings);
  entered = 0;
  auto running = std::async(std::launch::async, [&] { return post(server->client(), request); });
  while (entered == 0) std::this_thread::sleep_for(1ms);
  auto queued = std::async(std::launch::async, [&] { return post(server->client(), request); });
  httplib::Client third = server->client();
  while (waiting(third) != 1) std::this_thread::sleep_for(1ms);
  std::thread stopper([&] { server->server->stop(); });
  check_error(running.get(), 503, "the server is stopping");
  check_error(queued.get(), 503, "the server is stopping");
  stopper.join();
  server.reset();
}

TEST_CASE("serve: GET / is the page; the model and the server config describe themselves") {
  const Model model("serve_page");
  TestServer server(serve::model_inpainter(model.net));
  httplib::Client client = server.client();
  auto page = client.Get("/");
  REQUIRE(page);
  CHECK(page->status == 200);
  CHECK(page->get_header_value("Content-Type") == "text/html; charset=utf-8");
  CHECK(page->body == serve::kPageHtml);
  for (const char* needle : {"<canvas", "api/v1/inpaint", "Ctrl+Z", "Download", "drop"})
    CHECK_MESSAGE(page->body.find(needle) != std::string::npos, needle);
  // Works offline: nothing is fetched from elsewhere.
  for (const char* external : {"src=\"http", "href=\"http", "@import", "url(http"})
    CHECK_MESSAGE(page->body.find(external) == std::string::npos, external);

  auto model_answer = client.Get("/api/v1/model");
  REQUIRE(model_answer);
  const json m = json::parse(model_answer->body);
  CHECK(m["name"] == "test");
  CHECK(m["config"]["levels"] == 3);
  CHECK(m["device"] == "cpu");
  CHECK(m["model_type"] == "inpaint");
  auto config = client.Get("/api/v1/server-config");
  REQUIRE(config);
  const json c = json::parse(config->body);
  CHECK(c["modelInfos"][0]["name"] == "test");
  CHECK(c["enableFileManager"] == false);
  CHECK(c["pconv"]["hd_strategy"] == "crop");
  CHECK(c["pconv"]["hd_strategy_crop_trigger_size"] == 800);
  CHECK(c["pconv"]["queue"] == 8);
}

// ---------------------------------------------------------------- the binary

namespace {

// inpaint-serve started in the background, its stderr in a file.
struct ServeProcess {
  pid_t pid = -1;
  std::string err_path;
  ServeProcess(const std::string& dir, const std::vector<std::string>& args) {
    err_path = dir + "/serve.stderr";
    const std::string binary = pconv::testing::binary_dir() + "/inpaint-serve";
    REQUIRE_MESSAGE(std::filesystem::exists(binary), binary << " is not built");
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      FILE* err = std::freopen(err_path.c_str(), "w", stderr);
      if (!err) _exit(127);
      std::vector<char*> argv{const_cast<char*>(binary.c_str())};
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(binary.c_str(), argv.data());
      _exit(127);
    }
  }
  // The port from "open http://127.0.0.1:PORT/", or 0 when the process ended first.
  int wait_for_port() {
    for (int i = 0; i < 6000; ++i) {
      const std::string err = read_bytes(err_path);
      const size_t at = err.find("open http://127.0.0.1:");
      if (at != std::string::npos && err.find('/', at + 22) != std::string::npos)
        return std::stoi(err.substr(at + 22));
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return 0;
      }
      std::this_thread::sleep_for(10ms);
    }
    return 0;
  }
  // Exit status after `signal` (or none), waiting at most 60 s; -1 when it did not end.
  int stop(int signal) {
    if (pid < 0) return -1;
    if (signal) kill(pid, signal);
    for (int i = 0; i < 6000; ++i) {
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }
  ~ServeProcess() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

}  // namespace

TEST_CASE("serve: inpaint-serve prints its URL, answers, and stops cleanly on Ctrl-C") {
  const Model model("serve_binary");
  ServeProcess process(model.dir, {"--model", model.path, "--port", "0"});
  const int port = process.wait_for_port();
  CAPTURE(read_bytes(process.err_path));
  REQUIRE(port > 0);
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(60);
  auto r = client.Get("/api/v1/model");
  REQUIRE(r);
  CHECK(json::parse(r->body)["name"] == "model");  // the file's stem, never the server's paths
  CHECK(json::parse(r->body)["texture"] == "none");  // the page's checkbox starts from it
  CHECK(r->body.find(model.dir) == std::string::npos);
  const ImageU8 img = random_image(32, 24, 9);
  const MaskImage mask = box_mask(24, 32, 4, 4, 12, 12);
  const ImageU8 got = decode_answer(client.Post("/api/v1/inpaint", body(img, mask), "application/json"));
  CHECK(got.rgb == inference::inpaint(*model.net, img, mask).composite.rgb);
  CHECK(process.stop(SIGINT) == 0);
  const std::string err = read_bytes(process.err_path);
  CHECK(err.find("inpaint-serve: stopped") != std::string::npos);
  CHECK(err.find("error") == std::string::npos);
}

TEST_CASE("serve: Ctrl-C stops inpaint-serve within two seconds with stalled clients connected") {
  const Model model("serve_binary_stall");
  ServeProcess process(model.dir, {"--model", model.path, "--port", "0"});
  const int port = process.wait_for_port();
  REQUIRE(port > 0);
  // Two clients that sent half a request and stall (a server that waits for them takes a minute to exit).
  std::vector<int> stalled;
  for (int i = 0; i < 2; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    const std::string half = "POST /api/v1/inpaint HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\n";
    REQUIRE(::send(fd, half.data(), half.size(), MSG_NOSIGNAL) > 0);
    stalled.push_back(fd);
  }
  std::this_thread::sleep_for(200ms);
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(process.stop(SIGINT) == 0);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("inpaint-serve exited " << s << " s after Ctrl-C with 2 stalled clients");
  CHECK(s < 2.0);
  for (int fd : stalled) ::close(fd);
}

TEST_CASE("serve: inpaint-serve refuses a missing model, a busy port and bad options in one line") {
  const Model model("serve_binary_bad");
  const std::string& dir = model.dir;
  testing::check_one_line_error(testing::run_app("inpaint-serve", "--model " + quote(dir + "/none.safetensors"), dir),
                                "none.safetensors: no such file");
  if (bundled::find_model().empty())
    testing::check_one_line_error(testing::run_app("inpaint-serve", "--port 0", dir), "no --model given and no bundled model");
  TestServer holder(serve::model_inpainter(model.net));  // holds a port
  testing::check_one_line_error(
      testing::run_app("inpaint-serve", "--model " + quote(model.path) + " --port " + std::to_string(holder.port), dir),
      "cannot listen on 127.0.0.1:" + std::to_string(holder.port));
  CHECK(testing::run_app("inpaint-serve", "--model " + quote(model.path) + " --port 70000", dir).status == 1);
  CHECK(testing::run_app("inpaint-serve", "--model " + quote(model.path) + " --hd-strategy tile", dir).status == 1);
}
