// libFuzzer target: what inpaint-serve does with a connection's bytes before any route runs
// (apps/serving/http_parse.h, as apps/serving/http_server.cpp calls it): the request head, the
// body by Content-Length or chunked, then the multipart/form-data parser (apps/serving/multipart.h)
// on the body with the boundary of its Content-Type. (What the routes do with the parts is
// fuzz_serve's: the same field parsing as JSON's.)
// The input is one request as a client sends it, after a first byte that seeds how the body
// arrives: the chunked decoder is fed the same bytes in pieces and at once, and a body decoded
// in pieces must be the one decoded at once (a decoder that depended on how reads split the
// stream would answer a slow client differently). Errors are expected (HeadError, a failed
// decoder, pconv::Error from the multipart parser); anything else is a bug.
#include <cstdlib>
#include <string>

#include "apps/serving/http_parse.h"
#include "apps/serving/multipart.h"
#include "core/dtype.h"  // Error

using namespace pconv;

namespace {

constexpr size_t kMaxHeaderBytes = 16384;  // http::Settings' default

void check(bool ok) {
  if (!ok) std::abort();
}

// The chunked body fed `step(i)` bytes at a time, as reads of a slow client would bring it.
std::string chunked_in_pieces(const std::string& wire, uint8_t seed, http::ChunkedDecoder& decoder) {
  std::string in, out;
  uint32_t state = seed * 2654435761u + 1;
  for (size_t at = 0; at < wire.size() && !decoder.done() && !decoder.failed();) {
    state = state * 1103515245u + 12345u;
    const size_t n = std::min<size_t>(wire.size() - at, 1 + (state >> 16) % 64);
    in.append(wire, at, n);
    at += n;
    decoder.feed(in, out);
  }
  return out;
}

void multipart(const http::Request& request) {
  const std::string* type = request.header("content-type");
  const std::string boundary = serve::multipart_boundary(type ? *type : "");
  if (boundary.empty()) return;
  check(boundary.size() <= 200);
  std::vector<serve::FormPart> parts;
  try {
    parts = serve::parse_multipart(request.body, boundary);
  } catch (const Error&) {
    return;
  }
  // Each part is a piece of the body between two delimiters.
  size_t total = 0;
  for (const serve::FormPart& p : parts) {
    check(request.body.find(p.data) != std::string::npos);
    total += p.data.size() + boundary.size() + 2;
  }
  check(total <= request.body.size());
  if (!parts.empty()) check(serve::find_part(parts, parts[0].name) == &parts[0]);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t seed = data[0];
  const std::string wire(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t end = wire.find("\r\n\r\n");
  if (end == std::string::npos || end > kMaxHeaderBytes) return 0;  // the server answers 431 or waits

  http::Request request;
  bool chunked = false;
  if (const auto error = http::parse_head(wire.substr(0, end), request, chunked)) {
    check(error->status >= 400 && error->status <= 505 && !error->message.empty());
    return 0;
  }
  check(!request.method.empty() && !request.path.empty() && request.path[0] == '/');
  check(request.target.rfind(request.path, 0) == 0);
  check(!(chunked && request.content_length >= 0));
  for (const auto& [name, value] : request.headers) check(!name.empty() && http::lower(name) == name);

  const std::string rest = wire.substr(end + 4);
  if (chunked) {
    http::ChunkedDecoder whole, pieces;
    std::string in = rest, body;
    whole.feed(in, body);
    const std::string split = chunked_in_pieces(rest, seed, pieces);
    if (pieces.done()) check(whole.done() && split == body);
    check(!whole.done() || body.size() <= rest.size());
    if (!whole.done()) return 0;
    request.body = body;
  } else {
    request.body = rest.substr(0, size_t(std::max<int64_t>(request.content_length, 0)));
  }
  multipart(request);

  // The answer's bytes: a head that parses back, with the length it says.
  http::Response answer;
  answer.status = 200;
  answer.body = request.body;
  const std::string bytes = http::serialize(answer, true, false);
  check(bytes.size() >= request.body.size() && bytes.compare(bytes.size() - answer.body.size(), std::string::npos,
                                                               answer.body) == 0);
  return 0;
}
