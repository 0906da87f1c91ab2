#include "apps/serving/http_parse.h"

#include <algorithm>
#include <cctype>
#include <string_view>

namespace pconv::http {

namespace {

bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return s.substr(b, e - b);
}

}  // namespace

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

const std::string* Request::header(const std::string& name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return &v;
  return nullptr;
}

std::optional<HeadError> parse_head(const std::string& head, Request& r, bool& chunked) {
  chunked = false;
  const size_t line_end = head.find("\r\n");
  const std::string line = head.substr(0, line_end);
  const size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
  if (sp1 == std::string::npos || sp2 == sp1) return HeadError{400, "malformed request line"};
  r.method = line.substr(0, sp1);
  r.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string version = line.substr(sp2 + 1);
  if (r.method.empty() || !std::all_of(r.method.begin(), r.method.end(), is_token_char))
    return HeadError{400, "malformed request method"};
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return HeadError{505, "HTTP/1.0 or 1.1 only"};
  if (r.target.empty() || r.target[0] != '/' || r.target.find_first_of(" \t") != std::string::npos)
    return HeadError{400, "the request target must be a path"};
  const size_t q = r.target.find('?');
  r.path = r.target.substr(0, q);
  r.query = q == std::string::npos ? "" : r.target.substr(q + 1);
  size_t at = line_end == std::string::npos ? head.size() : line_end + 2;
  bool has_length = false, has_coding = false;
  while (at < head.size()) {
    size_t end = head.find("\r\n", at);
    if (end == std::string::npos) end = head.size();
    const std::string h = head.substr(at, end - at);
    at = end + 2;
    if (h.empty()) continue;
    if (h[0] == ' ' || h[0] == '\t') return HeadError{400, "folded header lines are not accepted"};
    const size_t colon = h.find(':');
    if (colon == std::string::npos || colon == 0) return HeadError{400, "malformed header line"};
    const std::string name = lower(h.substr(0, colon));
    if (!std::all_of(name.begin(), name.end(), is_token_char)) return HeadError{400, "malformed header name"};
    const std::string value = trim(h.substr(colon + 1));
    if (name == "content-length") {
      if (has_length || value.empty() || value.size() > 15 ||
          !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return HeadError{400, "Content-Length must be one decimal number"};
      r.content_length = std::stoll(value);
      has_length = true;
    } else if (name == "transfer-encoding") {
      if (lower(value) != "chunked") return HeadError{501, "the only transfer coding accepted is chunked"};
      has_coding = chunked = true;
    }
    r.headers.emplace_back(name, value);
  }
  if (has_length && has_coding) return HeadError{400, "both Content-Length and Transfer-Encoding"};
  return std::nullopt;
}

void ChunkedDecoder::feed(std::string& in, std::string& out) {
  size_t at = 0;
  while (state_ != State::Done && state_ != State::Error) {
    if (state_ == State::Data) {
      const size_t n = size_t(std::min<uint64_t>(left_, in.size() - at));
      out.append(in, at, n);
      at += n;
      left_ -= n;
      if (left_ > 0) break;
      state_ = State::DataEnd;
      continue;
    }
    const size_t end = in.find("\r\n", at);
    if (end == std::string::npos) {
      if (in.size() - at > 1024) state_ = State::Error;  // a size or trailer line this long is not one
      break;
    }
    const std::string line = in.substr(at, end - at);
    at = end + 2;
    if (state_ == State::DataEnd) {
      state_ = line.empty() ? State::Size : State::Error;
    } else if (state_ == State::Size) {
      const std::string digits = line.substr(0, line.find(';'));  // chunk extensions ignored
      if (digits.empty() || digits.size() > 15 || !std::all_of(digits.begin(), digits.end(), [](char c) {
            return std::isxdigit(static_cast<unsigned char>(c));
          })) {
        state_ = State::Error;
        break;
      }
      left_ = std::stoull(digits, nullptr, 16);
      state_ = left_ == 0 ? State::Trailer : State::Data;
    } else if (state_ == State::Trailer) {
      if (line.empty()) state_ = State::Done;
    }
  }
  in.erase(0, at);
}

const char* reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Status";
  }
}

std::string serialize(const Response& r, bool keep_alive, bool head_only) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason_phrase(r.status) + "\r\n";
  if (!r.content_type.empty() && r.status != 204) out += "Content-Type: " + r.content_type + "\r\n";
  if (r.status != 204) out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  out += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  for (const auto& [k, v] : r.headers) out += k + ": " + v + "\r\n";
  out += "\r\n";
  if (!head_only && r.status != 204) out += r.body;
  return out;
}

}  // namespace pconv::http
