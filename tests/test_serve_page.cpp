// inpaint-serve's page in a real browser: tests/browser/page_test.mjs drives Debian's headless
// chromium with puppeteer-core against a server on a loopback port (a stand-in inpainter paints
// the holes): a PNG, an EXIF-rotated JPEG and a WebP opened through the file chooser, a stroke
// painted with mouse events, only the stroke's pixels changed, undo/redo, download, no console
// errors. Skips, saying why, without node, chromium or tests/browser/node_modules (scripts/setup
// installs them with PCONV_BROWSER_DEPS=1, as CI does).
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "apps/serving/inpaint_server.h"
#include "core/io/image_meta.h"
#include "core/io/webp_codec.h"
#include "tests/test_util.h"

using namespace pconv;

namespace {

// Whether what the browser test needs is here, read once at start so that doctest reports the
// test as skipped without it instead of counting an early return as a pass.
bool browser_ready() {
  const char* chromium_env = std::getenv("PCONV_CHROMIUM");
  const std::string chromium = chromium_env ? chromium_env : "/usr/bin/chromium";
  for (const std::string& path :
       {std::string("/usr/bin/node"), chromium, testing::source_path("tests/browser/node_modules/puppeteer-core")})
    if (!std::filesystem::exists(path)) return false;
  return webp_available();
}

}  // namespace

// Skipped without them: scripts/setup installs node, chromium and puppeteer-core with
// PCONV_BROWSER_DEPS=1 (npm ci --prefix tests/browser).
TEST_CASE("serve_page: the page works in headless Chromium (file chooser, stroke, fill, undo, download) "
          "(needs node, chromium, puppeteer-core and libwebp)" * doctest::skip(!browser_ready())) {
  const std::string dir = testing::scratch_dir("serve_page");
  save_image(dir + "/photo.png", testing::random_image(96, 64, 21));
  // Stored 48×32 with EXIF orientation 6: shown (and opened) as 32×48.
  ImageMetadata rotate;
  rotate.exif = std::string("II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0\0\0\0\0", 26);
  testing::write_bytes(dir + "/rotated.jpg",
                       add_jpeg_metadata(encode_image(testing::random_image(48, 32, 22), ImageFormat::Jpeg, 95), rotate));
  testing::write_bytes(dir + "/photo.webp", encode_image(testing::random_image(96, 64, 23), ImageFormat::Webp, 100, true));

  serve::Inpainter painter = [](const serve::InpaintRequest& r, const std::function<bool()>&) {
    ImageU8 out = r.image;
    for (size_t i = 0; i < r.mask.known.size(); ++i)
      if (r.mask.known[i] < 0.5f) out.rgb[i * 3] = uint8_t(out.rgb[i * 3] ^ 0x80);  // visibly changed
    return out;
  };
  PConvUNetConfig config;
  config.levels = 3;
  config.width = 4;
  serve::InpaintServer server(painter, serve::model_json("test", config, "cpu"), serve::ServerSettings{});
  const int port = server.bind("127.0.0.1", 0);
  std::thread serving([&] { server.serve(); });
  const testing::Result r =
      testing::run("/usr/bin/node",
                   {testing::source_path("tests/browser/page_test.mjs"), "http://127.0.0.1:" + std::to_string(port) + "/", dir},
                   dir, 0, 180);
  server.stop();
  serving.join();
  MESSAGE(r.out << r.err);
  CHECK(r.status == 0);
}
