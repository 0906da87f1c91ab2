// multipart/form-data parsing (apps/serving/multipart.h) on hostile bodies: the cost stays
// linear in the body's size. (The format itself is tested with the HTTP layer in test_serve_http.)
#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "apps/serving/multipart.h"

using namespace pconv;

TEST_CASE("multipart: a part header padded with megabytes of spaces parses in linear time") {
  // Leading spaces were erased one at a time: 3 MB of them took minutes (seen reading the parser
  // for fuzz_http, whose inputs stay under 64 KiB, where the square still passes).
  const std::string body = "--x\r\nContent-Disposition:" + std::string(4 << 20, ' ') +
                           "form-data; name=\"a\"\r\nContent-Type:" + std::string(1 << 20, ' ') +
                           "text/plain\r\n\r\nvalue\r\n--x--\r\n";
  const auto start = std::chrono::steady_clock::now();
  const auto parts = serve::parse_multipart(body, "x");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  REQUIRE(parts.size() == 1);
  CHECK(parts[0].name == "a");
  CHECK(parts[0].content_type == "text/plain");
  CHECK(parts[0].data == "value");
  CHECK(seconds < 5);  // milliseconds when linear; quadratic, hours
}
