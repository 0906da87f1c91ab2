// inpaint-serve's HTTP layer and what clients send it: request heads, chunked and multipart
// bodies without sockets; then a server on a loopback port with a stand-in inpainter (holes
// painted one colour): answers in the input's format with its metadata, IOPaint's mask rule,
// the security checks (415, CORS, Origin, Host, API key), slow and stalled clients (bounded:
// a few connections for a few seconds, with the latencies printed), half-closed clients,
// early 413s, the memory budget, and stopping with clients still connected.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "apps/serving/base64.h"
#include "apps/serving/http_parse.h"
#include "apps/serving/inpaint_server.h"
#include "apps/serving/multipart.h"
#include "core/io/image_meta.h"
#include "core/io/webp_codec.h"
#include "tests/serve_util.h"
#include "tests/test_util.h"

using namespace pconv;
using namespace std::chrono_literals;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

const uint8_t kFill[3] = {1, 2, 3};

// Paints the holes kFill: what the server answers shows which pixels were holes.
serve::Inpainter painter() {
  return [](const serve::InpaintRequest& r, const std::function<bool()>&) {
    ImageU8 out = r.image;
    for (size_t i = 0; i < r.mask.known.size(); ++i)
      if (r.mask.known[i] < 0.5f) std::copy(kFill, kFill + 3, out.rgb.begin() + long(i * 3));
    return out;
  };
}

PConvUNetConfig tiny() {
  PConvUNetConfig c;
  c.levels = 3;
  c.width = 4;
  return c;
}

struct Server : testing::RunningServer {
  explicit Server(serve::ServerSettings settings = {}, serve::AccessSettings access = {},
                  serve::ConnectionSettings connections = {}, serve::IopaintSettings iopaint = {})
      : RunningServer(std::make_unique<serve::InpaintServer>(painter(), serve::model_json("test", tiny(), "cpu"),
                                                             settings, access, connections, iopaint)) {}
};

// A raw loopback connection, for what HTTP clients libraries will not send.
struct Raw {
  int fd = -1;
  explicit Raw(int port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  ~Raw() {
    if (fd >= 0) ::close(fd);
  }
  void send(const std::string& s) const { REQUIRE(::send(fd, s.data(), s.size(), MSG_NOSIGNAL) == ssize_t(s.size())); }
  // What arrives until the server closes or `timeout` passes.
  std::string read_all(std::chrono::milliseconds timeout = 5000ms) const {
    std::string out;
    const auto end = Clock::now() + timeout;
    while (Clock::now() < end) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      char buf[65536];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, size_t(n));
    }
    return out;
  }
};

ImageU8 gradient(int w, int h) {
  ImageU8 img;
  img.width = w, img.height = h, img.channels_in_file = 3;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) img.rgb.insert(img.rgb.end(), {uint8_t(x * 5), uint8_t(y * 5), uint8_t(128)});
  return img;
}

// White box (x0..x1, y0..y1) on black.
ImageU8 box_mask_png(int w, int h, int x0, int y0, int x1, int y1) {
  ImageU8 m;
  m.width = w, m.height = h, m.channels_in_file = 3;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) m.rgb.insert(m.rgb.end(), 3, (x >= x0 && x < x1 && y >= y0 && y < y1) ? 255 : 0);
  return m;
}

std::string inpaint_body(const std::string& image_bytes, const std::string& mask_bytes, json extra = json::object()) {
  extra["image"] = base64_encode(image_bytes);
  extra["mask"] = base64_encode(mask_bytes);
  return extra.dump();
}

std::string tiff_with_orientation(int orientation) {
  std::string t("II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0", 18);
  t += char(orientation);
  t += std::string("\0\0\0\0\0\0", 6);
  return t;
}

}  // namespace

// ---------------------------------------------------------------- without sockets

TEST_CASE("serve_http: request heads, chunked bodies and multipart forms are parsed, and malformed ones refused") {
  http::Request r;
  bool chunked = false;
  CHECK_FALSE(http::parse_head("POST /api/v1/inpaint?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nX-A:  b ", r, chunked));
  CHECK(r.path == "/api/v1/inpaint");
  CHECK(r.query == "x=1");
  CHECK(r.content_length == 12);
  CHECK(*r.header("x-a") == "b");
  const std::pair<const char*, int> bad[] = {
      {"GET", 400},
      {"GET / HTTP/2.0", 505},
      {"GET nothing HTTP/1.1", 400},
      {"GET / HTTP/1.1\r\nContent-Length: 1x", 400},
      {"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2", 400},
      {"GET / HTTP/1.1\r\nTransfer-Encoding: gzip", 501},
      {"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked", 400},
      {"GET / HTTP/1.1\r\nNoColon", 400},
      {"GET / HTTP/1.1\r\nA: b\r\n folded", 400},
  };
  for (const auto& entry : bad) {
    const auto& head = entry.first;
    CAPTURE(head);
    http::Request q;
    const auto error = http::parse_head(head, q, chunked);
    REQUIRE(error);
    CHECK(error->status == entry.second);
  }
  // Chunked, fed one byte at a time.
  const std::string wire = "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
  http::ChunkedDecoder decoder;
  std::string in, out;
  for (char c : wire) {
    in += c;
    decoder.feed(in, out);
  }
  CHECK(decoder.done());
  CHECK(out == "hello world");
  http::ChunkedDecoder broken;
  std::string junk = "zz\r\n";
  broken.feed(junk, out);
  CHECK(broken.failed());

  const std::string form = "--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a b.png\"\r\n"
                           "Content-Type: image/png\r\n\r\nPNG\r\nBYTES\r\n--XyZ\r\nContent-Disposition: form-data; "
                           "name=\"hd_strategy\"\r\n\r\nCrop\r\n--XyZ--\r\n";
  CHECK(serve::multipart_boundary("multipart/form-data; boundary=XyZ") == "XyZ");
  CHECK(serve::multipart_boundary("multipart/form-data; boundary=\"XyZ\"") == "XyZ");
  CHECK(serve::multipart_boundary("application/json") == "");
  const auto parts = serve::parse_multipart(form, "XyZ");
  REQUIRE(parts.size() == 2);
  CHECK(parts[0].name == "image");
  CHECK(parts[0].filename == "a b.png");
  CHECK(parts[0].data == "PNG\r\nBYTES");
  CHECK(parts[1].data == "Crop");
  // Every cut is refused as the missing piece it is, not with any error.
  for (size_t n = 0; n + 8 < form.size(); n += 3) {
    CAPTURE(n);
    std::string e = "(parsed)";
    try {
      serve::parse_multipart(form.substr(0, n), "XyZ");
    } catch (const Error& error) {
      e = error.what();
    }
    CAPTURE(e);
    CHECK((e == "multipart body without its first boundary" || e == "multipart body without its closing boundary" ||
           e == "multipart boundary not followed by a line end" ||
           e == "multipart part without the end of its headers"));
  }
}

TEST_CASE("serve_http: masks read as IOPaint does: grey ignoring alpha, over 127 is a hole") {
  // A white stroke painted on a transparent canvas: its anti-aliased rim has alpha 1..127.
  ImageU8 m;
  m.width = 6, m.height = 1, m.channels_in_file = 4;
  m.rgb = {255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 128, 128, 128, 127, 127, 127};
  m.alpha = {255, 100, 1, 0, 255, 255};
  const MaskImage mask = serve::mask_from_grey(m);
  CHECK(mask.known == std::vector<float>{0, 0, 0, 1, 0, 1});
  // Luma, not the mean: pure green (150) is a hole, pure red (76) is not.
  ImageU8 colours;
  colours.width = 2, colours.height = 1, colours.channels_in_file = 3;
  colours.rgb = {0, 255, 0, 255, 0, 0};
  CHECK(serve::mask_from_grey(colours).known == std::vector<float>{0, 1});
}

// ---------------------------------------------------------------- through HTTP

TEST_CASE("serve_http: answers come in the input's format with its ICC profile and EXIF; phone photos are turned") {
  Server server;
  httplib::Client client = server.client();
  const std::string icc = "fake ICC profile bytes";
  // A phone's JPEG: stored 40×24, EXIF orientation 6 (shown 24×40), with an ICC profile.
  ImageU8 stored = gradient(40, 24);
  const std::string jpeg = encode_image(stored, ImageFormat::Jpeg, 95, false, icc, tiff_with_orientation(6));
  // The mask is drawn on the photo as shown.
  const std::string mask = encode_png(box_mask_png(24, 40, 4, 10, 12, 20));
  auto r = client.Post("/api/v1/inpaint", inpaint_body(jpeg, mask), "application/json");
  REQUIRE(r);
  CAPTURE(r->body.substr(0, 300));
  REQUIRE(r->status == 200);
  CHECK(r->get_header_value("Content-Type") == "image/jpeg");
  CHECK(r->get_header_value("X-Seed") == "42");
  const DecodedImage out = decode_image(r->body, "answer");
  CHECK(out.format == ImageFormat::Jpeg);
  CHECK(out.image.width == 24);
  CHECK(out.image.height == 40);
  CHECK(out.orientation == 1);  // reset: the pixels are already turned
  CHECK(out.icc == icc);
  CHECK(exif_orientation(out.exif) == 1);
  CHECK(!out.exif.empty());

  // PNG in: PNG out, known pixels exact; GIF and BMP in: PNG out.
  const ImageU8 img = gradient(32, 20);
  const std::string mask32 = encode_png(box_mask_png(32, 20, 8, 4, 16, 12));
  r = client.Post("/api/v1/inpaint", inpaint_body(add_png_metadata(encode_png(img), {icc, "", 1}), mask32),
                  "application/json");
  REQUIRE(r);
  CHECK(r->get_header_value("Content-Type") == "image/png");
  const DecodedImage png = decode_image(r->body, "answer");
  CHECK(png.icc == icc);
  for (int y = 0; y < 20; ++y)
    for (int x = 0; x < 32; ++x) {
      const size_t i = size_t(y * 32 + x) * 3;
      const bool hole = x >= 8 && x < 16 && y >= 4 && y < 12;
      REQUIRE(png.image.rgb[i] == (hole ? kFill[0] : img.rgb[i]));
    }
  // Multipart, as `curl -F image=@photo.png -F mask=@mask.png -F hd_strategy=Crop` sends it.
  httplib::MultipartFormDataItems form = {{"image", encode_png(img), "photo.png", "image/png"},
                                          {"mask", mask32, "mask.png", "image/png"},
                                          {"hd_strategy_crop_margin", "64", "", ""},
                                          {"sd_seed", "7", "", ""}};
  r = client.Post("/api/v1/inpaint", form);
  REQUIRE(r);
  CAPTURE(r->body.substr(0, 300));
  CHECK(r->status == 200);
  CHECK(r->get_header_value("X-Seed") == "7");
  CHECK(decode_image(r->body, "answer").image.rgb == png.image.rgb);
}

TEST_CASE("serve_http: a lossless WebP in is a lossless WebP out, the PNG answer's pixels (needs libwebp)" *
          doctest::skip(!webp_available())) {
  Server server;
  httplib::Client client = server.client();
  const ImageU8 img = gradient(32, 20);
  const std::string mask32 = encode_png(box_mask_png(32, 20, 8, 4, 16, 12));
  auto r = client.Post("/api/v1/inpaint", inpaint_body(encode_png(img), mask32), "application/json");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  const DecodedImage png = decode_image(r->body, "answer");
  r = client.Post("/api/v1/inpaint", inpaint_body(encode_image(img, ImageFormat::Webp, 100, true), mask32),
                  "application/json");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  CHECK(r->get_header_value("Content-Type") == "image/webp");
  const DecodedImage webp = decode_image(r->body, "answer");
  CHECK(webp.lossless);
  CHECK(webp.image.rgb == png.image.rgb);  // lossless in, lossless out: the same pixels
}

TEST_CASE("serve_http: JSON routes refuse other bodies (415); other origins, hosts and missing keys are refused") {
  serve::AccessSettings access;
  access.allowed_origins = {"http://localhost:5173"};
  Server server({}, access);
  httplib::Client client = server.client();
  const std::string good = inpaint_body(encode_png(gradient(16, 16)), encode_png(box_mask_png(16, 16, 2, 2, 6, 6)));
  // A cross-site form post needs no preflight: text/plain is refused before the body is read.
  auto r = client.Post("/api/v1/inpaint", good, "text/plain");
  REQUIRE(r);
  CHECK(r->status == 415);
  CHECK(json::parse(r->body)["errors"].get<std::string>().find("application/json") != std::string::npos);
  // A page elsewhere: refused, whatever the type.
  httplib::Headers evil{{"Origin", "http://evil.example"}};
  r = client.Post("/api/v1/inpaint", evil, good, "application/json");
  REQUIRE(r);
  CHECK(r->status == 403);
  CHECK(r->get_header_value("Access-Control-Allow-Origin").empty());
  r = client.Get("/api/v1/server-config", evil);
  REQUIRE(r);
  CHECK(r->status == 403);
  // Its preflight is refused; an allowed origin's is answered, and its requests carry CORS.
  httplib::Headers preflight{{"Origin", "http://localhost:5173"}, {"Access-Control-Request-Method", "POST"},
                             {"Access-Control-Request-Headers", "content-type"}};
  r = client.Options("/api/v1/inpaint", preflight);
  REQUIRE(r);
  CHECK(r->status == 204);
  CHECK(r->get_header_value("Access-Control-Allow-Origin") == "http://localhost:5173");
  CHECK(r->get_header_value("Access-Control-Allow-Headers") == "content-type");
  r = client.Options("/api/v1/inpaint", evil);
  REQUIRE(r);
  CHECK(r->status == 403);
  r = client.Post("/api/v1/inpaint", httplib::Headers{{"Origin", "http://localhost:5173"}}, good, "application/json");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->get_header_value("Access-Control-Allow-Origin") == "http://localhost:5173");
  CHECK(r->get_header_value("Access-Control-Expose-Headers") == "X-Seed, Content-Disposition");
  // The page itself (same origin) passes.
  r = client.Post("/api/v1/inpaint", httplib::Headers{{"Origin", "http://127.0.0.1:" + std::to_string(server.port)}},
                  good, "application/json");
  REQUIRE(r);
  CHECK(r->status == 200);
  // DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends its own name as Host.
  Raw raw(server.port);
  raw.send("GET /api/v1/server-config HTTP/1.1\r\nHost: evil.example:" + std::to_string(server.port) + "\r\n\r\n");
  CHECK(raw.read_all().rfind("HTTP/1.1 403", 0) == 0);

  // "*" lets any origin in (documented as such).
  serve::AccessSettings any;
  any.allowed_origins = {"*"};
  Server open_server({}, any);
  r = open_server.client().Get("/api/v1/server-config", evil);
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->get_header_value("Access-Control-Allow-Origin") == "http://evil.example");

  // --api-key: /api/ needs the bearer token; the page does not.
  serve::AccessSettings keyed;
  keyed.api_key = "s3cret";
  Server key_server({}, keyed);
  httplib::Client kc = key_server.client();
  r = kc.Get("/api/v1/server-config");
  REQUIRE(r);
  CHECK(r->status == 401);
  CHECK(r->get_header_value("WWW-Authenticate") == "Bearer");
  r = kc.Get("/api/v1/server-config", httplib::Headers{{"Authorization", "Bearer wrong!"}});
  REQUIRE(r);
  CHECK(r->status == 401);
  r = kc.Get("/api/v1/server-config", httplib::Headers{{"Authorization", "Bearer s3cret"}});
  REQUIRE(r);
  CHECK(r->status == 200);
  r = kc.Get("/");
  REQUIRE(r);
  CHECK(r->status == 200);
}

TEST_CASE("serve_http: slow and stalled clients do not slow anyone else; deadlines close them") {
  serve::ConnectionSettings connections;
  connections.client_timeout_s = 1.5;
  connections.max_connections_per_client = 64;
  Server server({}, {}, connections);
  // 12 connections sending one header byte every 200 ms (a slow-headers attack, sped up and bounded).
  std::vector<std::unique_ptr<Raw>> slow;
  for (int i = 0; i < 12; ++i) slow.push_back(std::make_unique<Raw>(server.port));
  const std::string head = "GET /api/v1/server-config HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  std::atomic<bool> done{false};
  std::thread dripper([&] {
    for (size_t k = 0; k < 6 && !done; ++k) {  // 1.2 s, then stalled
      for (auto& s : slow) ::send(s->fd, &head[k], 1, MSG_NOSIGNAL);
      std::this_thread::sleep_for(200ms);
    }
  });
  double worst_ms = 0;
  httplib::Client client = server.client();
  for (int i = 0; i < 9; ++i) {
    const auto t0 = Clock::now();
    auto r = i % 3 == 2 ? client.Get("/") : client.Get("/api/v1/server-config");
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    worst_ms = std::max(worst_ms, ms);
    REQUIRE(r);
    CHECK(r->status == 200);
    std::this_thread::sleep_for(100ms);
  }
  MESSAGE("9 requests beside 12 dripping clients: slowest answer " << worst_ms << " ms");
  CHECK(worst_ms < 500);
  // The header deadline (1.5 s) has closed the drippers, with a 408.
  std::this_thread::sleep_for(1s);
  done = true;
  dripper.join();
  const std::string dropped = slow[0]->read_all(2000ms);
  CHECK(dropped.rfind("HTTP/1.1 408", 0) == 0);
}

TEST_CASE("serve_http: over-limit bodies are refused at once, half-closed clients answered, Expect and chunked work") {
  serve::ServerSettings settings;
  settings.limits.max_body_bytes = 1 << 20;
  Server server(settings);
  // A Content-Length over the limit: 413 before a byte of the body is sent.
  {
    Raw raw(server.port);
    const auto t0 = Clock::now();
    raw.send("POST /api/v1/inpaint HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             "Content-Length: 1000000000\r\n\r\n");
    const std::string answer = raw.read_all(3000ms);
    CHECK(answer.rfind("HTTP/1.1 413", 0) == 0);
    CHECK(answer.find("\"errors\":\"the request body is over the limit of 1048576 bytes\"") != std::string::npos);
    CHECK(Clock::now() - t0 < 1s);
  }
  const std::string body = inpaint_body(encode_png(gradient(16, 16)), encode_png(box_mask_png(16, 16, 2, 2, 6, 6)));
  // A complete request, then the client half-closes (shutdown of its sending side): answered.
  {
    Raw raw(server.port);
    raw.send("POST /api/v1/inpaint HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
             std::to_string(body.size()) + "\r\n\r\n" + body);
    ::shutdown(raw.fd, SHUT_WR);
    CHECK(raw.read_all().rfind("HTTP/1.1 200 OK", 0) == 0);
  }
  // Expect: 100-continue (curl, for bodies over 1 MB) and a chunked body.
  {
    Raw raw(server.port);
    raw.send("POST /api/v1/inpaint HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n");
    std::string got;
    for (int i = 0; i < 100 && got.find("\r\n\r\n") == std::string::npos; ++i) {
      char buf[256];
      const ssize_t n = ::recv(raw.fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) got.append(buf, size_t(n));
      std::this_thread::sleep_for(10ms);
    }
    CHECK(got.rfind("HTTP/1.1 100 Continue\r\n\r\n", 0) == 0);
    const size_t half = body.size() / 2;
    char size_line[32];
    std::snprintf(size_line, sizeof size_line, "%zx\r\n", half);
    std::string chunks = size_line + body.substr(0, half) + "\r\n";
    std::snprintf(size_line, sizeof size_line, "%zx\r\n", body.size() - half);
    chunks += size_line + body.substr(half) + "\r\n0\r\n\r\n";
    raw.send(chunks);
    CHECK(raw.read_all().rfind("HTTP/1.1 200 OK", 0) == 0);
  }
  // Keep-alive and pipelining: two requests in one write, two answers in order.
  {
    Raw raw(server.port);
    raw.send("GET /api/v1/samplers HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /api/v1/model HTTP/1.1\r\nHost: "
             "127.0.0.1\r\nConnection: close\r\n\r\n");
    const std::string both = raw.read_all();
    const size_t second = both.find("HTTP/1.1 200", 1);
    CHECK(both.rfind("HTTP/1.1 200", 0) == 0);
    REQUIRE(second != std::string::npos);
    CHECK(both.find("\"model_type\"", second) != std::string::npos);
  }
}

TEST_CASE("serve_http: the memory budget refuses what cannot fit (413) and what does not fit now (503)") {
  serve::ServerSettings settings;
  settings.memory_budget_bytes = 5 << 20;  // a 2 MiB JSON body holds 3.5 MiB (its base64 decoded too)
  settings.limits.max_body_bytes = 8 << 20;
  Server server(settings);
  httplib::Client client = server.client();
  // An 8192×1024 flat PNG: a few kilobytes, 8 Mpx decoded: over the budget before decoding.
  ImageU8 flat;
  flat.width = 8192, flat.height = 1024, flat.channels_in_file = 3;
  flat.rgb.assign(size_t(8192) * 1024 * 3, 200);
  const std::string png = encode_png(flat);
  REQUIRE(png.size() < 200000);
  auto r = client.Post("/api/v1/inpaint", inpaint_body(png, png), "application/json");
  REQUIRE(r);
  CHECK(r->status == 413);
  CHECK(json::parse(r->body)["errors"].get<std::string>().find("decoding these images needs") != std::string::npos);
  // A body larger than the budget: 413 from its Content-Length alone.
  r = client.Post("/api/v1/inpaint", std::string(6 << 20, ' '), "application/json");
  REQUIRE(r);
  CHECK(r->status == 413);
  // Two JSON bodies of 2 MiB: while the first is still arriving, the second does not fit.
  Raw first(server.port);
  first.send("POST /api/v1/inpaint HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
             std::to_string(2 << 20) + "\r\n\r\n{");
  std::this_thread::sleep_for(100ms);
  r = client.Post("/api/v1/inpaint", std::string(2 << 20, ' '), "application/json");
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK(json::parse(r->body)["errors"].get<std::string>().find("memory budget") != std::string::npos);
}

TEST_CASE("serve_http: stop() returns serve() within a second or two with stalled clients connected") {
  auto server = std::make_unique<Server>();
  std::vector<std::unique_ptr<Raw>> stalled;
  for (int i = 0; i < 4; ++i) {
    stalled.push_back(std::make_unique<Raw>(server->port));
    stalled.back()->send("POST /api/v1/inpaint HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         "Content-Length: 100000\r\n\r\n{\"image\":");
  }
  std::this_thread::sleep_for(100ms);
  const auto t0 = Clock::now();
  server.reset();  // stop() and join serve()
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  MESSAGE("stopped with 4 stalled uploads in " << s << " s");
  CHECK(s < 2.0);
}
