#pragma once
// HTTP/1.1 message syntax for apps/serving/http_server.h, apart from sockets so that it is
// tested (and fuzzable) on its own: the request head, chunked bodies, the answer's bytes.
#include <string>

#include "apps/serving/http_server.h"

namespace pconv::http {

// A request head that cannot be served: the status to answer and why.
struct HeadError {
  int status = 400;
  std::string message;
};

// Parses "METHOD target HTTP/1.x\r\nName: value\r\n...\r\n" (without the final empty line) into
// `r` (method, target, path, query, headers; content_length from Content-Length). `chunked`
// is set for Transfer-Encoding: chunked. Returns an error for anything malformed: a bad request
// line, a header line without a colon or folded, a Content-Length that is not one number,
// both Content-Length and Transfer-Encoding, a transfer coding other than chunked (501).
std::optional<HeadError> parse_head(const std::string& head, Request& r, bool& chunked);

// Decodes a chunked body incrementally: feed() consumes what it can from `in` (erasing it),
// appending data to `out`; done() after the last chunk and the trailers. Errors are sticky.
class ChunkedDecoder {
 public:
  enum class State { Size, Data, DataEnd, Trailer, Done, Error };
  void feed(std::string& in, std::string& out);
  bool done() const { return state_ == State::Done; }
  bool failed() const { return state_ == State::Error; }

 private:
  State state_ = State::Size;
  uint64_t left_ = 0;
};

// The answer's bytes: status line, Content-Type, Content-Length, Connection, the extra
// headers, and the body unless `head_only`.
std::string serialize(const Response& response, bool keep_alive, bool head_only);

// Lower-cases ASCII letters.
std::string lower(std::string s);

}  // namespace pconv::http
