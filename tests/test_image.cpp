#include <algorithm>
#include <doctest/doctest.h>

#include <stb_image_write.h>  // the implementation lives in core/io/image.cpp

#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

// stb_image_write's deflate, compiled in core/io/image.cpp (its header declares no prototype).
extern "C" unsigned char* stbi_zlib_compress(unsigned char* data, int data_len, int* out_len, int quality);

#include "core/io/image.h"
#include "tests/test_util.h"

using namespace pconv;

namespace {

using testing::random_image;
using testing::read_bytes;
using testing::write_bytes;

void expect_error(const std::string& path, const std::string& fragment, int64_t max_pixels = kMaxImagePixels) {
  try {
    read_image_u8(path, max_pixels);
    FAIL_CHECK(path << ": read without error");
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.rfind(path + ": ", 0) == 0);
    CHECK(msg.find(fragment) != std::string::npos);
  }
}

// The whole message: what is wrong, not only that something is.
void expect_exact_error(const std::string& path, const std::string& reason) {
  CHECK_THROWS_WITH_AS(read_image_u8(path), (path + ": " + reason).c_str(), Error);
}

std::string be32(uint32_t v) {
  return {char(v >> 24), char((v >> 16) & 0xff), char((v >> 8) & 0xff), char(v & 0xff)};
}

// A PNG laid out by hand: signature, IHDR (8-bit RGB), one chunk of the given type and
// declared length holding `data`, IEND. stb does not check CRCs, so they are 0.
std::string png_with(uint32_t width, uint32_t height, const std::string& type, uint32_t declared_length,
                     const std::string& data) {
  std::string png = "\x89PNG\r\n\x1a\n";
  png += be32(13) + "IHDR" + be32(width) + be32(height) + std::string("\x08\x02\x00\x00\x00", 5) + be32(0);
  png += be32(declared_length) + type + data + be32(0);
  return png + be32(0) + "IEND" + be32(0);
}

// zlib stream of `n` zero bytes: a few kilobytes that inflate to n.
std::string zeros_deflated(int n) {
  std::vector<unsigned char> zeros(size_t(n), 0);
  int length = 0;
  unsigned char* z = stbi_zlib_compress(zeros.data(), n, &length, 8);
  std::string out(reinterpret_cast<const char*>(z), size_t(length));
  std::free(z);
  return out;
}

int64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return int64_t(u.ru_maxrss) * 1024;
}

}  // namespace

TEST_CASE("image: PNG round trip is exact, through bytes and through tensors") {
  const std::string dir = testing::scratch_dir("image_png");
  for (auto [w, h] : {std::pair{7, 5}, std::pair{1, 1}, std::pair{64, 3}}) {
    ImageU8 img = random_image(w, h, uint64_t(w * 100 + h));
    const std::string path = dir + "/x" + std::to_string(w) + ".png";
    save_image(path, img);
    ImageU8 back = read_image_u8(path);
    CHECK(back.width == w);
    CHECK(back.height == h);
    CHECK(back.channels_in_file == 3);
    CHECK(back.rgb == img.rgb);
    CHECK(read_bytes(path) == encode_png(img));

    Tensor t = load_image(path);
    REQUIRE(t.shape() == Shape{3, h, w});
    CHECK(t.dtype() == DType::F32);
    // Channel-major: element (c, y, x) is byte (y·w + x)·3 + c over 255.
    const int y = h - 1, x = w / 2, c = 2;
    CHECK(t.at({c, y, x}) == doctest::Approx(img.rgb[size_t((y * w + x) * 3 + c)] / 255.0).epsilon(1e-7));
    CHECK(tensor_to_image(t).rgb == img.rgb);
  }
}

TEST_CASE("image: JPEG round trip is close; extensions are case-insensitive") {
  const std::string dir = testing::scratch_dir("image_jpeg");
  ImageU8 img;
  img.width = 48;
  img.height = 32;
  img.rgb.resize(48 * 32 * 3);
  for (int y = 0; y < 32; ++y)  // smooth content, as JPEG is meant for
    for (int x = 0; x < 48; ++x) {
      uint8_t* p = &img.rgb[size_t((y * 48 + x) * 3)];
      p[0] = uint8_t(x * 5);
      p[1] = uint8_t(y * 7);
      p[2] = uint8_t(128 + 60 * std::sin(0.2 * (x + y)));
    }
  for (const char* name : {"/a.jpg", "/b.JPEG"}) {
    save_image(dir + name, img, 95);
    ImageU8 back = read_image_u8(dir + name);
    REQUIRE(back.rgb.size() == img.rgb.size());
    double total = 0;
    int worst = 0;
    for (size_t i = 0; i < img.rgb.size(); ++i) {
      const int d = std::abs(int(back.rgb[i]) - int(img.rgb[i]));
      total += d;
      worst = std::max(worst, d);
    }
    const double mean = total / double(img.rgb.size());
    INFO(name << ": mean error " << mean << ", max " << worst);
    CHECK(mean < 2.0);
    CHECK(worst < 24);
    CHECK(mean > 0.0);  // it really went through JPEG
  }
  // Lower quality, smaller file.
  save_image(dir + "/q20.jpg", img, 20);
  CHECK(read_bytes(dir + "/q20.jpg").size() < read_bytes(dir + "/a.jpg").size());
}

TEST_CASE("image: grey is replicated, alpha dropped, channels_in_file reported") {
  const std::string dir = testing::scratch_dir("image_channels");
  const int w = 5, h = 4;
  ImageU8 rgb = random_image(w, h, 3);
  for (int comp : {1, 2, 3, 4}) {
    std::vector<uint8_t> pixels(size_t(w * h * comp));
    for (int i = 0; i < w * h; ++i)
      for (int c = 0; c < comp; ++c)
        pixels[size_t(i * comp + c)] = c == 3 || (comp == 2 && c == 1)
                                           ? uint8_t(i * 11)  // alpha: must not leak into RGB
                                           : rgb.rgb[size_t(i * 3 + c)];
    const std::string path = dir + "/c" + std::to_string(comp) + ".png";
    REQUIRE(stbi_write_png(path.c_str(), w, h, comp, pixels.data(), w * comp));
    ImageU8 back = read_image_u8(path);
    INFO("components " << comp);
    CHECK(back.channels_in_file == comp);
    REQUIRE(back.rgb.size() == size_t(w * h * 3));
    for (int i = 0; i < w * h; ++i)
      for (int c = 0; c < 3; ++c) {
        const uint8_t expected = comp <= 2 ? rgb.rgb[size_t(i * 3)] : rgb.rgb[size_t(i * 3 + c)];
        CHECK(back.rgb[size_t(i * 3 + c)] == expected);
      }
  }
}

TEST_CASE("image: missing, corrupt, truncated and oversized files are refused clearly") {
  const std::string dir = testing::scratch_dir("image_bad");
  CHECK_THROWS_WITH_AS(read_image_u8(dir + "/absent.png"), (dir + "/absent.png: no such file").c_str(), Error);
  CHECK_THROWS_WITH_AS(load_image(dir + "/no/such/dir.png"), (dir + "/no/such/dir.png: no such file").c_str(),
                       Error);
  expect_error(dir, "not a regular file");

  write_bytes(dir + "/noise.png", "this is not an image at all, just some text");
  expect_exact_error(dir + "/noise.png", "not a readable image (stb: Image not of any known type, or corrupt)");
  write_bytes(dir + "/empty.png", "");
  expect_exact_error(dir + "/empty.png", "not a readable image (stb: Image not of any known type, or corrupt)");

  const std::string png = encode_png(random_image(32, 32, 5));
  write_bytes(dir + "/truncated.png", png.substr(0, png.size() / 2));
  expect_exact_error(dir + "/truncated.png", "not a readable image (stb: Corrupt PNG)");
  ImageU8 smooth = random_image(32, 32, 8);
  for (auto& b : smooth.rgb) b = uint8_t(b / 4 + 96);
  save_image(dir + "/full.jpg", smooth);
  const std::string jpeg = read_bytes(dir + "/full.jpg");
  write_bytes(dir + "/truncated.jpg", jpeg.substr(0, jpeg.size() / 2));
  expect_exact_error(dir + "/truncated.jpg", "not a readable image (stb: Corrupt JPEG)");
  write_bytes(dir + "/header_only.png", png.substr(0, 20));
  expect_exact_error(dir + "/header_only.png",
                     "not a readable image (stb: Image not of any known type, or corrupt)");

  // The limit is checked from the header, before decoding.
  write_bytes(dir + "/wide.png", encode_png(random_image(20, 10, 6)));
  expect_error(dir + "/wide.png", "image is 20×10 (200 pixels), over the limit of 199 pixels", 199);
  CHECK(read_image_u8(dir + "/wide.png", 200).width == 20);
}

TEST_CASE("image: tensor conversion clamps and rounds; saving checks its arguments") {
  const std::string dir = testing::scratch_dir("image_tensor");
  Tensor t = Tensor::from_vector(std::vector<float>{-0.5f, 1.5f, 0.5f, NAN, 0.2f, 1.0f}, {1, 2, 3});
  ImageU8 img = tensor_to_image(t);
  CHECK(img.width == 3);
  CHECK(img.height == 2);
  const std::vector<uint8_t> grey = {0, 255, 128, 0, 51, 255};  // lround(x·255) after clamping
  for (size_t i = 0; i < grey.size(); ++i)
    for (size_t c = 0; c < 3; ++c) CHECK(img.rgb[i * 3 + c] == grey[i]);
  Tensor f64 = Tensor::from_vector(std::vector<double>{0.0, 0.25, 1.0}, {3, 1, 1});
  CHECK(tensor_to_image(f64).rgb == std::vector<uint8_t>{0, 64, 255});

  CHECK_THROWS_WITH_AS(tensor_to_image(Tensor::zeros({2, 4, 4})),
                       "tensor_to_image: expected a 3×H×W or 1×H×W tensor, got shape [2, 4, 4]", Error);
  CHECK_THROWS_WITH_AS(save_image(dir + "/x.bmp", img),
                       (dir + "/x.bmp: unknown image extension '.bmp' (use .png, .jpg or .jpeg)").c_str(),
                       Error);
  CHECK_THROWS_AS(save_image(dir + "/missing/x.png", img), Error);
  CHECK_FALSE(std::filesystem::exists(dir + "/missing"));
  ImageU8 bad = img;
  bad.rgb.pop_back();
  CHECK_THROWS_AS(encode_png(bad), Error);

  save_image(dir + "/t.png", t);
  CHECK(read_image_u8(dir + "/t.png").rgb == img.rgb);
}

TEST_CASE("image: BMP, TGA and GIF are read; formats README does not document are not compiled in") {
  const std::string dir = testing::scratch_dir("image_formats");
  const ImageU8 img = random_image(9, 6, 11);
  REQUIRE(stbi_write_bmp((dir + "/a.bmp").c_str(), 9, 6, 3, img.rgb.data()));
  REQUIRE(stbi_write_tga((dir + "/a.tga").c_str(), 9, 6, 3, img.rgb.data()));
  CHECK(read_image_u8(dir + "/a.bmp").rgb == img.rgb);
  CHECK(read_image_u8(dir + "/a.tga").rgb == img.rgb);
  // A valid 1×1 GIF (its one colour transparent), read as its first frame.
  const std::string gif("GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00\x21\xf9\x04\x01\x00\x00\x00"
                        "\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b",
                        43);
  write_bytes(dir + "/a.gif", gif);
  CHECK(read_image_u8(dir + "/a.gif").width == 1);
  write_bytes(dir + "/a.hdr.png", "#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 1 +X 1\n\x80\x80\x80\x80");
  expect_error(dir + "/a.hdr.png", "not a readable image (stb: ");
}

TEST_CASE("image: decoding from memory gives what the file gives; alpha is kept when asked") {
  const std::string dir = testing::scratch_dir("image_memory");
  const int w = 6, h = 5;
  std::vector<uint8_t> rgba(size_t(w * h * 4));
  for (size_t i = 0; i < rgba.size(); ++i) rgba[i] = uint8_t(i * 37 + 11);
  REQUIRE(stbi_write_png((dir + "/rgba.png").c_str(), w, h, 4, rgba.data(), w * 4));
  const ImageU8 dropped = read_image_u8(dir + "/rgba.png");
  const ImageU8 kept = read_image_u8(dir + "/rgba.png", kMaxImagePixels, ImageAlpha::Keep);
  const ImageU8 from_memory = decode_image_u8(read_bytes(dir + "/rgba.png"), "upload", kMaxImagePixels, ImageAlpha::Keep);
  CHECK(dropped.alpha.empty());
  REQUIRE(kept.alpha.size() == size_t(w * h));
  for (int i = 0; i < w * h; ++i) {
    CHECK(kept.alpha[size_t(i)] == rgba[size_t(i * 4 + 3)]);
    for (int c = 0; c < 3; ++c) CHECK(kept.rgb[size_t(i * 3 + c)] == rgba[size_t(i * 4 + c)]);
  }
  CHECK(kept.rgb == dropped.rgb);
  CHECK(from_memory.rgb == kept.rgb);
  CHECK(from_memory.alpha == kept.alpha);
  // No alpha in the file, none in the image.
  save_image(dir + "/rgb.png", random_image(w, h, 2));
  CHECK(read_image_u8(dir + "/rgb.png", kMaxImagePixels, ImageAlpha::Keep).alpha.empty());
  CHECK_THROWS_WITH_AS(decode_image_u8("junk", "upload"), "upload: not a readable image (stb: Image not of any known type, or corrupt)",
                       Error);
}

TEST_CASE("image: hostile files fail as corrupt without large allocations") {
  const std::string dir = testing::scratch_dir("image_hostile");
  // The data of a 1×1 PNG inflates to 8 MB: stb would grow its buffer to hold it all.
  const std::string bomb = zeros_deflated(8 << 20);
  CHECK(bomb.size() < 200'000);
  write_bytes(dir + "/bomb.png", png_with(1, 1, "IDAT", uint32_t(bomb.size()), bomb));
  expect_error(dir + "/bomb.png", "corrupt image: decoding its data would need more memory than a 1×1 image");
  // The same data with the size it really has decodes (the file is otherwise well formed).
  const std::string fine = zeros_deflated((512 * 3 + 1) * 512);
  write_bytes(dir + "/fine.png", png_with(512, 512, "IDAT", uint32_t(fine.size()), fine));
  CHECK(read_image_u8(dir + "/fine.png").rgb == std::vector<uint8_t>(512 * 512 * 3, 0));
  // A chunk that says it is 2 GB long, in a small file.
  write_bytes(dir + "/chunk.png", png_with(4, 4, "IDAT", 0x7ffffff0u, "xx"));
  expect_error(dir + "/chunk.png", "corrupt image: decoding its data would need more memory than a 4×4 image");
  CHECK_THROWS_WITH_AS(decode_image_u8(png_with(4, 4, "IDAT", 0x7ffffff0u, "xx"), "upload"),
                       "upload: corrupt image: decoding its data would need more memory than a 4×4 image", Error);
  // A side over 65536 pixels, even within the pixel limit and with valid data; 65536 is fine.
  const std::string row = zeros_deflated(1 + 65537 * 3), row_ok = zeros_deflated(1 + 65536 * 3);
  CHECK_THROWS_WITH_AS(decode_image_u8(png_with(65537, 1, "IDAT", uint32_t(row.size()), row), "upload"),
                       doctest::Contains("upload: not a readable image (stb: "), Error);
  CHECK(decode_image_u8(png_with(65536, 1, "IDAT", uint32_t(row_ok.size()), row_ok), "upload").width == 65536);
}

TEST_CASE("image: the dimensions are checked from the header before the file is read") {
  const std::string dir = testing::scratch_dir("image_header_first");
  // A 1.5 GB file (sparse: no disk used) whose header says 9000×9000, over the pixel limit.
  const std::string path = dir + "/huge.png";
  write_bytes(path, png_with(9000, 9000, "IDAT", 2, "xx"));
  std::filesystem::resize_file(path, uintmax_t(1536) << 20);
  const int64_t before = peak_rss_bytes();
  expect_error(path, "image is 9000×9000 (81000000 pixels), over the limit of 67108864 pixels");
  CHECK(peak_rss_bytes() - before < (int64_t(256) << 20));  // reading it whole would take 1.5 GB
  std::filesystem::remove(path);
  // A small image at the start of a file far larger than such an image needs.
  save_image(dir + "/padded.png", random_image(2, 2, 1));
  CHECK(read_image_u8(dir + "/padded.png").width == 2);
  std::filesystem::resize_file(dir + "/padded.png", uintmax_t(20) << 20);
  expect_error(dir + "/padded.png", "file of 20971520 bytes is larger than a 2×2 image needs (at most 16777280)");
}

namespace {
// Fills 64 KiB of the stack below the caller's frame, where the next call's frames will be.
[[gnu::noinline]] void scribble_stack(uint8_t fill) {
  volatile uint8_t bytes[1 << 16];
  for (auto& b : bytes) b = fill;
}
}  // namespace

TEST_CASE("image: the stb bugs fuzzing found are fixed (third_party/stb/stb_image.h)") {
  // Fix 1: a JPEG whose Huffman table counts sum past 256 overflowed stb 2.27's tables.
  const std::string dht =
      read_bytes(testing::source_path("tests/fuzz/corpus/fuzz_mask/regression-jpeg-dht-overflow")).substr(1);
  CHECK_THROWS_WITH_AS(decode_image_u8(dht, "dht"), doctest::Contains("dht: not a readable image (stb: "), Error);
  // A BMP header with a negative height and a width of 2^30 + 5: refused before any arithmetic.
  const std::string bmp = read_bytes(testing::source_path("tests/fuzz/corpus/fuzz_image/regression-bmp-negative-height"));
  CHECK_THROWS_WITH_AS(decode_image_u8(bmp, "bmp"),
                       "bmp: corrupt image: its header says 1073741829×-855621629 (each side must be 1 to 65536 pixels)",
                       Error);
  // Fix 2: a TGA shorter than its pixels is refused instead of giving rows of uninitialised memory.
  CHECK_THROWS_WITH_AS(
      decode_image_u8(read_bytes(testing::source_path("tests/fuzz/corpus/fuzz_image/regression-tga-truncated")), "tga"),
      "tga: not a readable image (stb: TGA pixel data is truncated)", Error);
  const ImageU8 img = random_image(5, 18, 3);
  std::string tga;
  stbi_write_tga_with_rle = 0;  // the uncompressed layout, where the short read was
  REQUIRE(stbi_write_tga_to_func([](void* out, void* data, int n) { static_cast<std::string*>(out)->append(static_cast<char*>(data), size_t(n)); },
                                 &tga, 5, 18, 3, img.rgb.data()));
  stbi_write_tga_with_rle = 1;
  REQUIRE(tga.size() == 18 + 5 * 18 * 3);  // header and pixels
  CHECK(decode_image_u8(tga, "tga").rgb == img.rgb);
  for (size_t cut : {size_t(18 + 20), size_t(18 + 5 * 18 * 3 - 1)})
    CHECK_THROWS_WITH_AS(decode_image_u8(tga.substr(0, cut), "tga"),
                         "tga: not a readable image (stb: TGA pixel data is truncated)", Error);
  // Fix 4: a palette BMP whose pixel indices go past its palette read stb's uninitialised
  // palette array (stack memory): the same file decoded differently with a different stack.
  // Decoded after the stack below is filled with 0x00 and then with 0xff, it must be the same,
  // and indices past the palette are black.
  const std::string pal = read_bytes(testing::source_path("tests/fuzz/corpus/fuzz_image/regression-bmp-palette-uninitialised"));
  auto decode_on_stack = [&](uint8_t fill) {
    scribble_stack(fill);  // the frames decode_image_u8 is about to use
    return decode_image_u8(pal, "bmp");
  };
  const ImageU8 zeros = decode_on_stack(0x00), ones = decode_on_stack(0xff);
  REQUIRE(zeros.width == 347);
  CHECK(zeros.rgb == ones.rgb);
  CHECK(std::all_of(ones.rgb.begin(), ones.rgb.end(), [](uint8_t v) { return v == 0; }));
}
