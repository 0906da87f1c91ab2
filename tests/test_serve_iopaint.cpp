// IOPaint's routes beyond inpainting and its clients' request shapes, replayed against a server
// on a loopback port with a stand-in inpainter: adjust_mask, samplers, gen-info, inputimage,
// save_image, the file manager, model switching, connected_clients, Socket.IO long-polling, and
// requests as IOPaint's web app, Krita's and darktable's plugins send them.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <future>
#include <thread>

#include "apps/serving/base64.h"
#include "apps/serving/inpaint_server.h"
#include "tests/serve_util.h"
#include "tests/test_util.h"

using namespace pconv;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

PConvUNetConfig tiny() {
  PConvUNetConfig c;
  c.levels = 3;
  c.width = 4;
  return c;
}

// Paints the holes one colour, so the answer shows which model ran and where the holes were.
serve::Inpainter painter(uint8_t v) {
  return [v](const serve::InpaintRequest& r, const std::function<bool()>& cancelled) {
    cancelled();  // one "pass"
    ImageU8 out = r.image;
    for (size_t i = 0; i < r.mask.known.size(); ++i)
      if (r.mask.known[i] < 0.5f) out.rgb[i * 3] = out.rgb[i * 3 + 1] = out.rgb[i * 3 + 2] = v;
    return out;
  };
}

struct Server : testing::RunningServer {
  explicit Server(serve::IopaintSettings iopaint = {})
      : RunningServer(std::make_unique<serve::InpaintServer>(
            painter(1), serve::model_json("first", tiny(), "cpu"), serve::ServerSettings{}, serve::AccessSettings{},
            serve::ConnectionSettings{}, std::move(iopaint))) {}
};

ImageU8 mask_image(int w, int h, const std::vector<std::pair<int, int>>& holes) {
  ImageU8 m;
  m.width = w, m.height = h, m.channels_in_file = 3;
  m.rgb.assign(size_t(w * h * 3), 0);
  for (auto [x, y] : holes) std::fill_n(m.rgb.begin() + (y * w + x) * 3, 3, uint8_t(255));
  return m;
}

std::string data_url(const std::string& type, const std::string& bytes) {
  return "data:" + type + ";base64," + base64_encode(bytes);
}

}  // namespace

TEST_CASE("serve_iopaint: adjust_mask, samplers and gen-info answer as IOPaint's") {
  Server server;
  httplib::Client client = server.client();
  auto adjust = [&](const ImageU8& mask, const std::string& operate, json kernel) {
    auto r = client.Post("/api/v1/adjust_mask",
                         json{{"mask", data_url("image/png", encode_png(mask))}, {"operate", operate},
                              {"kernel_size", kernel}}.dump(),
                         "application/json");
    REQUIRE(r);
    CAPTURE(r->body.substr(0, 200));
    REQUIRE(r->status == 200);
    CHECK(r->get_header_value("Content-Type") == "image/png");
    const ImageU8 out = decode_image_u8(r->body, "answer", kMaxImagePixels, ImageAlpha::Keep);
    std::vector<int> holes;
    for (size_t i = 0; i < out.alpha.size(); ++i) {
      if (out.alpha[i] == 0) continue;
      CHECK(out.alpha[i] == 186);
      CHECK((out.rgb[i * 3] == 255 && out.rgb[i * 3 + 1] == 203 && out.rgb[i * 3 + 2] == 0));
      holes.push_back(int(i));
    }
    return holes;
  };
  // OpenCV's 3×3 ellipse is a cross: one pixel grows into five; a 3×3 box shrinks to its centre.
  CHECK(adjust(mask_image(5, 5, {{2, 2}}), "expand", 1) == std::vector<int>{7, 11, 12, 13, 17});
  CHECK(adjust(mask_image(5, 5, {{1, 1}, {2, 1}, {3, 1}, {1, 2}, {2, 2}, {3, 2}, {1, 3}, {2, 3}, {3, 3}}), "shrink",
               "1") == std::vector<int>{12});
  CHECK(adjust(mask_image(2, 1, {{0, 0}}), "reverse", 5) == std::vector<int>{1});
  auto bad = client.Post("/api/v1/adjust_mask", json{{"mask", "x"}, {"operate", "blur"}}.dump(), "application/json");
  REQUIRE(bad);
  CHECK(bad->status == 400);

  auto samplers = client.Get("/api/v1/samplers");
  REQUIRE(samplers);
  CHECK(json::parse(samplers->body).size() == 15);

  // A PNG with Stable Diffusion's "parameters" text.
  std::string png = encode_png(mask_image(2, 2, {}));
  const std::string text = std::string("parameters\0", 11) + "a red barn\nNegative prompt: fog, rain\nSteps: 20";
  std::string chunk = std::string(1, char(0)) + char(0) + char(0) + char(text.size()) + "tEXt" + text + "0000";
  png.insert(33, chunk);  // after IHDR; stb ignores CRCs of ancillary chunks, and gen-info reads none
  httplib::MultipartFormDataItems form = {{"file", png, "image.png", "image/png"}};
  auto info = client.Post("/api/v1/gen-info", form);
  REQUIRE(info);
  CAPTURE(info->body);
  CHECK(json::parse(info->body) == json{{"prompt", "a red barn"}, {"negative_prompt", "fog, rain"}});
}

TEST_CASE("serve_iopaint: inputimage, save_image and the file manager with --input and --output-dir") {
  const std::string dir = testing::scratch_dir("serve_iopaint_files");
  std::filesystem::create_directories(dir + "/in");
  std::filesystem::create_directories(dir + "/out");
  const ImageU8 photo = testing::random_image(12, 8, 3);
  save_image(dir + "/in/photo.png", photo);
  save_image(dir + "/in/two words.jpg", photo);
  testing::write_bytes(dir + "/in/notes.txt", "not an image");
  {
    Server none;
    auto r = none.client().Get("/api/v1/inputimage");
    REQUIRE(r);
    CHECK(r->status == 200);  // IOPaint's answer when no input is configured
    CHECK(json::parse(r->body)["errors"] == "No input image configured");
    httplib::MultipartFormDataItems form = {{"file", "bytes", "a.png", "image/png"}};
    auto s = none.client().Post("/api/v1/save_image", form);
    REQUIRE(s);
    CHECK(s->status == 400);
    const json config = json::parse(none.client().Get("/api/v1/server-config")->body);
    CHECK(config["enableAutoSaving"] == false);
    CHECK(config["enableFileManager"] == false);
  }
  serve::IopaintSettings files;
  files.input = dir + "/in/photo.png";
  files.output_dir = dir + "/out";
  {
    Server server(files);
    httplib::Client client = server.client();
    auto r = client.Get("/api/v1/inputimage");
    REQUIRE(r);
    CHECK(r->get_header_value("Content-Type") == "image/png");
    CHECK(r->body == testing::read_bytes(dir + "/in/photo.png"));
    // IOPaint's web app takes the name after "filename=" up to a ';' (quotes kept) and saves
    // under it: unquoted, so that it saves photo.png, not "inputImage".
    CHECK(r->get_header_value("Content-Disposition") == "inline; filename=photo.png");
    // Only the base name is used: nothing is written outside --output-dir.
    httplib::MultipartFormDataItems form = {{"file", "result bytes", "../../escape.png", "image/png"}};
    auto s = client.Post("/api/v1/save_image", form);
    REQUIRE(s);
    CHECK(s->status == 200);
    CHECK(testing::read_bytes(dir + "/out/escape.png") == "result bytes");
    CHECK_FALSE(std::filesystem::exists(dir + "/escape.png"));
    // A JSON body is not an upload.
    auto j = client.Post("/api/v1/save_image", "{}", "application/json");
    REQUIRE(j);
    CHECK(j->status == 415);
  }
  files.input = dir + "/in";
  Server server(files);
  httplib::Client client = server.client();
  const json config = json::parse(client.Get("/api/v1/server-config")->body);
  CHECK(config["enableFileManager"] == true);
  CHECK(config["enableAutoSaving"] == true);
  CHECK(config.contains("plugins"));
  auto medias = client.Get("/api/v1/medias?tab=input");
  REQUIRE(medias);
  const json list = json::parse(medias->body);
  REQUIRE(list.size() == 2);
  CHECK(list[0]["name"] == "photo.png");
  CHECK(list[0]["width"] == 12);
  CHECK(list[1]["name"] == "two words.jpg");
  auto file = client.Get("/api/v1/media_file?tab=input&filename=two%20words.jpg");
  REQUIRE(file);
  CHECK(file->status == 200);
  CHECK(file->body == testing::read_bytes(dir + "/in/two words.jpg"));
  CHECK_FALSE(file->has_header("Content-Disposition"));  // a space: not a token, so no name
  auto escape = client.Get("/api/v1/media_file?tab=input&filename=..%2Fin%2Fphoto.png");
  REQUIRE(escape);
  CHECK(escape->status == 422);
  CHECK(client.Get("/api/v1/medias?tab=nothing")->status == 422);
  CHECK(client.Get("/api/v1/inputimage")->status == 404);  // a folder is not an input image
}

TEST_CASE("serve_iopaint: POST /api/v1/model switches among the models offered; unknown names get 404") {
  serve::IopaintSettings models;
  models.models = {{"first", "/nowhere/first.safetensors"}, {"second", "/nowhere/second.safetensors"}};
  models.load = [](const serve::ModelChoice& c) {
    return serve::LoadedModel{painter(c.name == "second" ? 2 : 1), serve::model_json(c.name, tiny(), "cpu")};
  };
  Server server(models);
  httplib::Client client = server.client();
  const json config = json::parse(client.Get("/api/v1/server-config")->body);
  CHECK(config["disableModelSwitch"] == false);
  REQUIRE(config["modelInfos"].size() == 2);
  CHECK(config["modelInfos"][1]["name"] == "second");
  CHECK(config.dump().find("/nowhere") == std::string::npos);  // no server paths
  auto unknown = client.Post("/api/v1/model", json{{"name", "lama"}}.dump(), "application/json");
  REQUIRE(unknown);
  CHECK(unknown->status == 404);
  auto switched = client.Post("/api/v1/model", json{{"name", "second"}}.dump(), "application/json");
  REQUIRE(switched);
  CHECK(json::parse(switched->body)["name"] == "second");
  CHECK(json::parse(client.Get("/api/v1/model")->body)["name"] == "second");
  const std::string body = json{{"image", base64_encode(encode_png(testing::random_image(8, 8, 1)))},
                                {"mask", base64_encode(encode_png(mask_image(8, 8, {{3, 3}})))}}
                               .dump();
  auto r = client.Post("/api/v1/inpaint", body, "application/json");
  REQUIRE(r);
  CHECK(decode_image_u8(r->body, "answer").rgb[(3 * 8 + 3) * 3] == 2);  // the second model ran
}

TEST_CASE("serve_iopaint: Socket.IO long-polling connects and carries progress; connected_clients counts it") {
  Server server;
  httplib::Client client = server.client();
  auto open = client.Get("/socket.io/?EIO=4&transport=polling&t=abc");
  REQUIRE(open);
  REQUIRE(open->body.rfind("0{", 0) == 0);
  const json handshake = json::parse(open->body.substr(1));
  const std::string sid = handshake["sid"];
  CHECK(handshake["upgrades"].empty());
  const std::string poll = "/socket.io/?EIO=4&transport=polling&sid=" + sid;
  auto connect = client.Post(poll, "40", "text/plain;charset=UTF-8");
  REQUIRE(connect);
  CHECK(connect->body == "ok");
  auto ack = client.Get(poll);
  REQUIRE(ack);
  CHECK(ack->body.rfind("40{\"sid\":", 0) == 0);
  CHECK(json::parse(client.Get("/api/v1/connected_clients")->body) == json{{"count", 1}});
  // A long poll held open while an inpainting runs gets its events.
  auto events = std::async(std::launch::async, [&] { return server.client().Get(poll); });
  std::this_thread::sleep_for(200ms);
  const std::string body = json{{"image", base64_encode(encode_png(testing::random_image(8, 8, 1)))},
                                {"mask", base64_encode(encode_png(mask_image(8, 8, {{3, 3}})))}}
                               .dump();
  REQUIRE(client.Post("/api/v1/inpaint", body, "application/json")->status == 200);
  auto got = events.get();
  REQUIRE(got);
  CAPTURE(got->body);
  CHECK(got->body.find("42[\"diffusion_progress\",{\"step\":0}]") != std::string::npos);
  std::string all = got->body;
  if (all.find("diffusion_finish") == std::string::npos) all += client.Get(poll)->body;
  CHECK(all.find("42[\"diffusion_finish\"]") != std::string::npos);
  // A browser tab that closes drops its poll: the count falls within 2 s (darktable's cue).
  {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(server.port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    const std::string get = "GET " + poll + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    REQUIRE(::send(fd, get.data(), get.size(), MSG_NOSIGNAL) == ssize_t(get.size()));
    std::this_thread::sleep_for(2500ms);  // the earlier polls' 2 s have passed; this one is open
    CHECK(json::parse(client.Get("/api/v1/connected_clients")->body) == json{{"count", 1}});
    ::close(fd);
    std::this_thread::sleep_for(2500ms);
    CHECK(json::parse(client.Get("/api/v1/connected_clients")->body) == json{{"count", 0}});
  }
  auto unknown = client.Get("/socket.io/?EIO=4&transport=polling&sid=nope");
  REQUIRE(unknown);
  CHECK(unknown->status == 400);
}

TEST_CASE("serve_iopaint: a cross-origin Socket.IO poll answered by an event carries the CORS headers") {
  // IOPaint's web app run by Vite (npm run dev, VITE_BACKEND) polls from another origin: a held
  // poll answered when an event comes must say Access-Control-Allow-Origin as the others do,
  // or the browser drops it and the client reconnects, losing the events.
  serve::AccessSettings access;
  access.allowed_origins = {"http://127.0.0.1:5173"};
  testing::RunningServer server(std::make_unique<serve::InpaintServer>(
      painter(1), serve::model_json("first", tiny(), "cpu"), serve::ServerSettings{}, access));
  httplib::Client client = server.client();
  const httplib::Headers origin = {{"Origin", "http://127.0.0.1:5173"}};
  auto open = client.Get("/socket.io/?EIO=4&transport=polling&t=abc", origin);
  REQUIRE(open);
  CHECK(open->get_header_value("Access-Control-Allow-Origin") == "http://127.0.0.1:5173");
  const std::string poll = "/socket.io/?EIO=4&transport=polling&sid=" + json::parse(open->body.substr(1))["sid"].get<std::string>();
  REQUIRE(client.Post(poll, origin, "40", "text/plain;charset=UTF-8"));
  auto ack = client.Get(poll, origin);  // the "40" ack, answered at once
  REQUIRE(ack);
  CHECK(ack->get_header_value("Access-Control-Allow-Origin") == "http://127.0.0.1:5173");
  auto held = std::async(std::launch::async, [&] { return server.client().Get(poll, origin); });
  std::this_thread::sleep_for(200ms);
  const std::string body = json{{"image", base64_encode(encode_png(testing::random_image(8, 8, 1)))},
                                {"mask", base64_encode(encode_png(mask_image(8, 8, {{3, 3}})))}}
                               .dump();
  REQUIRE(client.Post("/api/v1/inpaint", origin, body, "application/json")->status == 200);
  auto got = held.get();
  REQUIRE(got);
  CAPTURE(got->body);
  CHECK(got->body.find("diffusion_progress") != std::string::npos);
  CHECK(got->get_header_value("Access-Control-Allow-Origin") == "http://127.0.0.1:5173");
  CHECK(got->get_header_value("Content-Type") == "text/plain; charset=UTF-8");
  CHECK(got->get_header_value_count("Access-Control-Allow-Origin") == 1);
}

TEST_CASE("serve_iopaint: --web-app serves a built web app at / beside the API, nothing outside its folder") {
  // IOPaint serves its built web_app at / (StaticFiles); the production build calls a relative
  // /api/v1 and opens Socket.IO on the same origin, so the same server must serve both.
  const std::string dir = testing::scratch_dir("serve_iopaint_web_app");
  std::filesystem::create_directories(dir + "/dist/assets");
  testing::write_bytes(dir + "/dist/index.html", "<!doctype html><title>IOPaint</title>");
  testing::write_bytes(dir + "/dist/assets/index-abc.js", "console.log(1)");
  testing::write_bytes(dir + "/dist/assets/index-abc.css", "body{}");
  testing::write_bytes(dir + "/dist/favicon.ico", "ico");
  testing::write_bytes(dir + "/secret.txt", "outside");
  std::filesystem::remove(dir + "/dist/assets/link.txt");
  std::filesystem::create_symlink(dir + "/secret.txt", dir + "/dist/assets/link.txt");
  const std::string root = dir + "/dist";

  // The pure answer: files by path, "/" and "…/" as index.html, nothing else.
  CHECK(serve::web_app_answer(root, "/").body == "<!doctype html><title>IOPaint</title>");
  CHECK(serve::web_app_answer(root, "/").content_type == "text/html; charset=utf-8");
  CHECK(serve::web_app_answer(root, "/assets/index-abc.js").content_type == "text/javascript; charset=utf-8");
  CHECK(serve::web_app_answer(root, "/assets/index%2Dabc.css").content_type == "text/css; charset=utf-8");
  for (const char* bad : {"/../secret.txt", "/assets/../../secret.txt", "/assets/%2e%2e/%2e%2e/secret.txt",
                          "/assets/..%2f..%2fsecret.txt", "/assets/link.txt", "/assets", "/nope.js", "//etc/passwd",
                          "/assets/%00.js", "/assets\\..\\..\\secret.txt", "assets/index-abc.js"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(serve::web_app_answer(root, bad), serve::ApiError);
  }

  serve::IopaintSettings settings;
  settings.web_app = root;
  Server server(settings);
  httplib::Client client = server.client();
  auto page = client.Get("/");
  REQUIRE(page);
  CHECK(page->status == 200);
  CHECK(page->body == "<!doctype html><title>IOPaint</title>");  // the web app, not pconv's page
  auto js = client.Get("/assets/index-abc.js");
  REQUIRE(js);
  CHECK(js->status == 200);
  CHECK(js->get_header_value("Content-Type") == "text/javascript; charset=utf-8");
  CHECK(js->get_header_value("X-Content-Type-Options") == "nosniff");
  CHECK(client.Get("/favicon.ico")->body == "ico");
  auto head = client.Head("/assets/index-abc.css");
  REQUIRE(head);
  CHECK(head->status == 200);
  CHECK(head->body.empty());
  CHECK(client.Get("/assets/missing.js")->status == 404);
  CHECK(client.Get("/assets/link.txt")->status == 404);
  CHECK(client.Post("/", "x", "text/plain")->status == 405);
  // The API and Socket.IO are as without it.
  auto model = client.Get("/api/v1/model");
  REQUIRE(model);
  CHECK(json::parse(model->body)["name"] == "first");
  CHECK(client.Get("/api/v1/nope")->status == 404);
  CHECK(client.Get("/socket.io/?EIO=4&transport=polling")->body.rfind("0{", 0) == 0);
  // Other hosts are refused as for the API (DNS rebinding).
  auto rebound = client.Get("/", {{"Host", "evil.example:8080"}});
  REQUIRE(rebound);
  CHECK(rebound->status == 403);
}

TEST_CASE("serve_iopaint: request replays of IOPaint's web app, Krita's and darktable's plugins") {
  Server server;
  httplib::Client client = server.client();
  const ImageU8 photo = testing::random_image(20, 16, 7);
  const std::string mask = encode_png(mask_image(20, 16, {{4, 4}, {5, 4}}));
  // IOPaint's web app: the file as opened (a JPEG data URL) with its many fields...
  json web = {{"image", data_url("image/jpeg", encode_image(photo, ImageFormat::Jpeg, 90))},
              {"mask", data_url("image/png", mask)},
              {"ldm_steps", 25},
              {"hd_strategy", "Crop"},
              {"hd_strategy_crop_triger_size", 640},
              {"prompt", ""},
              {"sd_seed", -1},
              {"croper_x", 0},
              {"paint_by_example_example_image", nullptr}};
  auto r = client.Post("/api/v1/inpaint", web.dump(), "application/json");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->get_header_value("Content-Type") == "image/jpeg");
  // sd_seed -1 is IOPaint's "random": it answers the seed it drew (1..99999999), which the web
  // app shows and re-sends when the seed is fixed.
  const int64_t seed = std::stoll(r->get_header_value("X-Seed"));
  CHECK(seed >= 1);
  CHECK(seed <= 99999999);
  // ...then the next stroke re-sends the PNG result still labelled with the original type.
  web["image"] = data_url("image/jpeg", encode_png(photo));
  r = client.Post("/api/v1/inpaint", web.dump(), "application/json");
  REQUIRE(r);
  CHECK(r->get_header_value("Content-Type") == "image/png");  // the bytes decide, not the label
  // Its error toast shows `errors`.
  web["mask"] = data_url("image/png", encode_png(mask_image(3, 3, {})));
  r = client.Post("/api/v1/inpaint", web.dump(), "application/json");
  REQUIRE(r);
  CHECK(r->status == 400);
  CHECK(json::parse(r->body)["errors"].get<std::string>().find("must be the same size") != std::string::npos);

  // Krita: an RGBA PNG data URL and a grey PNG mask, requests.post(json=...): RGBA comes back.
  ImageU8 rgba = photo;
  rgba.alpha.assign(20 * 16, 200);
  ImageU8 grey_mask = mask_image(20, 16, {{4, 4}});
  const json krita = {{"image", data_url("image/png", encode_png(rgba))}, {"mask", data_url("image/png", encode_png(grey_mask))},
                      {"hd_strategy", "Original"}};
  r = client.Post("/api/v1/inpaint", krita.dump(), "application/json");
  REQUIRE(r);
  CHECK(r->status == 200);
  const ImageU8 krita_out = decode_image_u8(r->body, "answer", kMaxImagePixels, ImageAlpha::Keep);
  CHECK(krita_out.alpha == rgba.alpha);

  // darktable's probes: the page is HTML, the config has plugins and the flags, clients count.
  auto page = client.Get("/");
  REQUIRE(page);
  CHECK(page->get_header_value("Content-Type").rfind("text/html", 0) == 0);
  const json config = json::parse(client.Get("/api/v1/server-config")->body);
  for (const char* key : {"plugins", "enableAutoSaving", "enableFileManager", "modelInfos"}) CHECK(config.contains(key));
  const json clients = json::parse(client.Get("/api/v1/connected_clients")->body);
  CHECK(clients["count"].is_number_integer());
}
