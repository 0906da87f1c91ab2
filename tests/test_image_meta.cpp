// Images as clients send them: EXIF orientation 1–8 (JPEG with hand-written EXIF in both byte
// orders, PNG's eXIf, WebP's EXIF), WebP decode and encode, GIF's first frame, and answers that
// carry the input's ICC profile and EXIF (orientation reset to 1). Hostile EXIF blocks read as
// "no orientation".
#include <doctest/doctest.h>

#include "core/data/dataset.h"
#include "core/io/image.h"
#include "core/io/image_meta.h"
#include "core/io/webp_codec.h"
#include "tests/test_util.h"

using namespace pconv;

namespace {

std::string u16(uint32_t v, bool big) { return big ? std::string{char(v >> 8), char(v & 255)} : std::string{char(v & 255), char(v >> 8)}; }
std::string u32(uint32_t v, bool big) { return big ? u16(v >> 16, true) + u16(v & 0xffff, true) : u16(v & 0xffff, false) + u16(v >> 16, false); }

// A TIFF block as cameras write it: IFD0 with an ImageDescription-like filler entry and the
// orientation (tag 0x0112, SHORT, 1 value).
std::string exif_tiff(int orientation, bool big) {
  std::string t = big ? std::string("MM\0*", 4) : std::string("II*\0", 4);
  t += u32(8, big) + u16(2, big);
  t += u16(0x011a, big) + u16(3, big) + u32(1, big) + u16(72, big) + u16(0, big);  // XResolution-ish filler
  t += u16(0x0112, big) + u16(3, big) + u32(1, big) + u16(uint32_t(orientation), big) + u16(0, big);
  return t + u32(0, big);
}

// A JPEG with an APP1 Exif segment right after SOI, as phones write them.
std::string with_exif(const std::string& jpeg, const std::string& tiff) {
  const size_t n = tiff.size() + 8;
  return jpeg.substr(0, 2) + "\xff\xe1" + u16(uint32_t(n), true) + std::string("Exif\0\0", 6) + tiff + jpeg.substr(2);
}

// 24×16 stored pixels in four flat quadrants, so JPEG keeps the colours near.
ImageU8 quadrants() {
  ImageU8 img;
  img.width = 24, img.height = 16, img.channels_in_file = 3;
  const uint8_t colours[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};  // TL TR BL BR
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 24; ++x) {
      const int q = (y >= 8 ? 2 : 0) + (x >= 12 ? 1 : 0);
      img.rgb.insert(img.rgb.end(), colours[q], colours[q] + 3);
    }
  return img;
}

enum Corner { TL, TR, BL, BR };

bool near_colour(const ImageU8& img, Corner c, const uint8_t (&want)[3]) {
  const int x = (c == TR || c == BR) ? img.width - 2 : 1, y = (c == BL || c == BR) ? img.height - 2 : 1;
  for (int k = 0; k < 3; ++k)
    if (std::abs(int(img.rgb[size_t(y * img.width + x) * 3 + size_t(k)]) - int(want[k])) > 40) return false;
  return true;
}

// Where EXIF's table (row 0 / column 0) puts the stored top-left, top-right and bottom-left.
struct Placement {
  Corner tl, tr, bl;
};
const Placement kPlacement[9] = {{TL, TR, BL}, {TL, TR, BL}, {TR, TL, BR}, {BR, BL, TR}, {BL, BR, TL},
                                 {TL, BL, TR}, {TR, BR, TL}, {BR, TR, BL}, {BL, TL, BR}};
const uint8_t kRed[3] = {255, 0, 0}, kGreen[3] = {0, 255, 0}, kBlue[3] = {0, 0, 255};

void check_shown(const ImageU8& shown, int orientation) {
  CAPTURE(orientation);
  CHECK(shown.width == (orientation >= 5 ? 16 : 24));
  CHECK(shown.height == (orientation >= 5 ? 24 : 16));
  CHECK(near_colour(shown, kPlacement[orientation].tl, kRed));
  CHECK(near_colour(shown, kPlacement[orientation].tr, kGreen));
  CHECK(near_colour(shown, kPlacement[orientation].bl, kBlue));
}

}  // namespace

TEST_CASE("image_meta: a JPEG's EXIF orientation 1-8 is applied, in both byte orders, from memory and from files") {
  const std::string dir = testing::scratch_dir("image_meta_orientation");
  const std::string plain = encode_image(quadrants(), ImageFormat::Jpeg, 100);
  for (int orientation = 1; orientation <= 8; ++orientation)
    for (bool big : {false, true}) {
      const std::string jpeg = with_exif(plain, exif_tiff(orientation, big));
      const DecodedImage d = decode_image(jpeg, "photo.jpg");
      CHECK(d.format == ImageFormat::Jpeg);
      CHECK(d.orientation == orientation);
      check_shown(d.image, orientation);
      CHECK(exif_orientation(d.exif) == 1);  // reset in the copy an answer carries
      CHECK(d.exif.size() == exif_tiff(1, big).size());
      testing::write_bytes(dir + "/p.jpg", jpeg);
      check_shown(read_image_u8(dir + "/p.jpg"), orientation);  // inpaint-run, -eval, training
    }
}

TEST_CASE("image_meta: orientation from PNG's eXIf; alpha turns with the pixels") {
  ImageU8 img = quadrants();
  img.alpha.assign(size_t(24 * 16), 255);
  img.alpha[0] = 7;  // stored top-left
  for (int orientation : {3, 6, 8}) {
    CAPTURE(orientation);
    ImageMetadata meta;
    meta.exif = exif_tiff(orientation, orientation == 6);
    const std::string png = add_png_metadata(encode_png(img), meta);
    const DecodedImage d = decode_image(png, "p.png", kMaxImagePixels, ImageAlpha::Keep);
    check_shown(d.image, orientation);
    const Corner tl = kPlacement[orientation].tl;
    const int x = (tl == TR || tl == BR) ? d.image.width - 1 : 0, y = (tl == BL || tl == BR) ? d.image.height - 1 : 0;
    CHECK(int(d.image.alpha[size_t(y * d.image.width + x)]) == 7);
  }
}

TEST_CASE("image_meta: orientation from WebP's EXIF (needs libwebp)" * doctest::skip(!webp_available())) {
  for (int orientation : {3, 6, 8}) {
    CAPTURE(orientation);
    const std::string exif = exif_tiff(orientation, orientation == 6);
    check_shown(decode_image(encode_image(quadrants(), ImageFormat::Webp, 100, true, "", exif), "p.webp").image,
                orientation);
  }
}

TEST_CASE("image_meta: hostile EXIF blocks read as orientation 1") {
  CHECK(exif_orientation("") == 1);
  CHECK(exif_orientation("II*\0") == 1);
  std::string t = exif_tiff(6, false);
  CHECK(exif_orientation(t) == 6);
  for (size_t n = 0; n < t.size(); ++n) CHECK(exif_orientation(t.substr(0, n)) == (n >= t.size() - 4 ? 6 : 1));
  std::string far = t;
  far[4] = char(0xf0), far[7] = char(0x7f);  // IFD0 offset far past the end
  CHECK(exif_orientation(far) == 1);
  std::string many = t;
  many[8] = char(0xff), many[9] = char(0xff);  // 65535 entries in a 40-byte block
  CHECK(exif_orientation(many) == 6);          // found before the count runs out of bytes
  CHECK(exif_orientation(exif_tiff(9, true)) == 1);
  CHECK(exif_orientation(exif_tiff(0, true)) == 1);
  // A JPEG whose APP1 length runs past the end: the pixels still decode, no orientation.
  const std::string plain = encode_image(quadrants(), ImageFormat::Jpeg, 90);
  const std::string bad = plain.substr(0, 2) + "\xff\xe1\xff\xf0" + "Exif" + plain.substr(2);
  CHECK(read_jpeg_metadata(bad).orientation == 1);
}

namespace {

void check_metadata_carried(ImageFormat f) {
  std::string icc(70000, '\0');  // over one JPEG segment: two APP2 chunks
  for (size_t i = 0; i < icc.size(); ++i) icc[i] = char((i * 31 + 7) & 255);
  const std::string exif = exif_tiff(1, false);
  const ImageU8 img = testing::random_image(10, 7, 3);
  {
    CAPTURE(image_format_name(f));
    const std::string bytes = encode_image(img, f, 100, true, icc, exif);
    const DecodedImage d = decode_image(bytes, "answer");
    CHECK(d.format == f);
    CHECK(d.icc == icc);
    CHECK(d.exif == exif);
    CHECK(d.image.width == 10);
    if (f != ImageFormat::Jpeg) CHECK(d.image.rgb == img.rgb);  // lossless: exact
    // Without metadata nothing is added.
    const DecodedImage bare = decode_image(encode_image(img, f, 100, true), "answer");
    CHECK(bare.icc.empty());
    CHECK(bare.exif.empty());
  }
}

}  // namespace

TEST_CASE("image_meta: ICC profiles and EXIF carried into WebP answers (needs libwebp)" *
          doctest::skip(!webp_available())) {
  check_metadata_carried(ImageFormat::Webp);
}

TEST_CASE("image_meta: ICC profiles and EXIF carried into JPEG and PNG answers") {
  check_metadata_carried(ImageFormat::Jpeg);
  check_metadata_carried(ImageFormat::Png);
  const ImageU8 img = testing::random_image(10, 7, 3);
  CHECK_THROWS_WITH_AS(encode_image(img, ImageFormat::Gif), "encode_image: cannot write gif (png, jpeg or webp)", Error);
  CHECK_THROWS_WITH_AS(encode_image(img, ImageFormat::Jpeg, 0), "encode_image: quality 0 is outside 1..100", Error);
}

TEST_CASE("image_meta: WebP lossless is exact with alpha, lossy is close; corrupt WebP is refused in one line "
          "(needs libwebp)" * doctest::skip(!webp_available())) {
  ImageU8 img = testing::random_image(33, 17, 5);
  img.alpha.resize(33 * 17);
  for (size_t i = 0; i < img.alpha.size(); ++i) img.alpha[i] = uint8_t(i * 7);
  img.channels_in_file = 4;
  const std::string lossless = encode_image(img, ImageFormat::Webp, 100, true);
  const DecodedImage d = decode_image(lossless, "a.webp", kMaxImagePixels, ImageAlpha::Keep);
  CHECK(d.lossless);
  CHECK(d.image.alpha == img.alpha);
  // Fully transparent pixels may lose their colour in lossless WebP (libwebp's "exact" is
  // off): compare where alpha is not 0.
  size_t differing = 0;
  for (size_t i = 0; i < img.alpha.size(); ++i)
    for (size_t k = 0; k < 3; ++k) differing += img.alpha[i] != 0 && d.image.rgb[i * 3 + k] != img.rgb[i * 3 + k];
  CHECK(differing == 0);
  CHECK(decode_image(lossless, "a.webp").image.alpha.empty());  // alpha dropped unless asked
  const ImageU8 flat = quadrants();
  const DecodedImage lossy = decode_image(encode_image(flat, ImageFormat::Webp, 90, false), "b.webp");
  CHECK(!lossy.lossless);
  check_shown(lossy.image, 1);
  CHECK(read_image_header(lossless, "a.webp").width == 33);
  CHECK_THROWS_WITH_AS(decode_image(lossless, "a.webp", 100), doctest::Contains("over the limit of 100 pixels"), Error);
  CHECK_THROWS_WITH_AS(decode_image(lossless.substr(0, 40), "cut.webp"), "cut.webp: not a readable image (corrupt or truncated WebP)", Error);
  const std::string dir = testing::scratch_dir("image_meta_webp");
  testing::write_bytes(dir + "/a.webp", lossless);
  CHECK(read_image_u8(dir + "/a.webp").rgb.size() == 33 * 17 * 3);
}

TEST_CASE("image_meta: a GIF's first frame is read") {
  // Two 1×1 frames (white, then black): the first one is the still.
  const std::string gif("GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00"
                        "\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00"
                        "\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x4c\x01\x00\x3b",
                        50);
  const DecodedImage d = decode_image(gif, "a.gif");
  CHECK(d.format == ImageFormat::Gif);
  REQUIRE(d.image.width == 1);
  CHECK(d.image.rgb == std::vector<uint8_t>{255, 255, 255});
}

TEST_CASE("image_meta: folders list WebP and GIF photos with the others (training, inpaint-run, inpaint-eval)") {
  const std::string dir = testing::scratch_dir("image_meta_listing");
  for (const char* name : {"a.webp", "b.GIF", "c.jpg", "d.txt"}) testing::write_bytes(dir + "/" + name, "x");
  std::vector<std::string> names;
  for (const std::string& path : list_images(dir)) names.push_back(path.substr(path.find_last_of('/') + 1));
  CHECK(names == std::vector<std::string>{"a.webp", "b.GIF", "c.jpg"});
}
