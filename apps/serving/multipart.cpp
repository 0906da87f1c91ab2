#include "apps/serving/multipart.h"

#include "apps/serving/http_parse.h"
#include "core/tensor.h"  // Error

namespace pconv::serve {

namespace {

// The value of `key` in "form-data; name=\"image\"; filename=\"a.png\"" (quoted or not).
std::string parameter(const std::string& header, const std::string& key) {
  const std::string lowered = http::lower(header);
  size_t at = 0;
  while ((at = lowered.find(key + "=", at)) != std::string::npos) {
    // A whole parameter name: preceded by ';' or a space ("filename=" must not match "name=").
    if (at > 0 && lowered[at - 1] != ';' && lowered[at - 1] != ' ') {
      at += key.size();
      continue;
    }
    size_t v = at + key.size() + 1;
    if (v < header.size() && header[v] == '"') {
      std::string out;
      for (++v; v < header.size() && header[v] != '"'; ++v) {
        if (header[v] == '\\' && v + 1 < header.size()) ++v;
        out += header[v];
      }
      return out;
    }
    const size_t end = header.find(';', v);
    std::string out = header.substr(v, end == std::string::npos ? std::string::npos : end - v);
    while (!out.empty() && (out.back() == ' ' || out.back() == '\t')) out.pop_back();
    return out;
  }
  return "";
}

}  // namespace

std::string multipart_boundary(const std::string& content_type) {
  if (http::lower(content_type).rfind("multipart/form-data", 0) != 0) return "";
  const std::string b = parameter(content_type, "boundary");
  return b.size() <= 200 ? b : "";
}

std::vector<FormPart> parse_multipart(const std::string& body, const std::string& boundary) {
  const std::string delimiter = "--" + boundary;
  size_t at = body.find(delimiter);
  if (boundary.empty() || at == std::string::npos) throw Error("multipart body without its first boundary");
  std::vector<FormPart> parts;
  for (;;) {
    at += delimiter.size();
    if (body.compare(at, 2, "--") == 0) return parts;  // the closing boundary
    if (body.compare(at, 2, "\r\n") != 0) throw Error("multipart boundary not followed by a line end");
    at += 2;
    const size_t head_end = body.find("\r\n\r\n", at);
    if (head_end == std::string::npos) throw Error("multipart part without the end of its headers");
    FormPart part;
    std::string disposition;
    for (size_t line = at; line < head_end;) {
      size_t end = body.find("\r\n", line);
      if (end == std::string::npos || end > head_end) end = head_end;
      const std::string h = body.substr(line, end - line);
      const size_t colon = h.find(':');
      if (colon != std::string::npos) {
        const std::string name = http::lower(h.substr(0, colon));
        // One erase: removing spaces one at a time costs the square of their number (a
        // header of a few MB of spaces would hold a worker for hours).
        std::string value = h.substr(colon + 1);
        value.erase(0, value.find_first_not_of(' '));
        if (name == "content-disposition") disposition = value;
        if (name == "content-type") part.content_type = value;
      }
      line = end + 2;
    }
    if (disposition.empty()) throw Error("multipart part without Content-Disposition");
    part.name = parameter(disposition, "name");
    part.filename = parameter(disposition, "filename");
    const size_t data_start = head_end + 4;
    const size_t next = body.find("\r\n" + delimiter, data_start);
    if (next == std::string::npos) throw Error("multipart body without its closing boundary");
    part.data = body.substr(data_start, next - data_start);
    parts.push_back(std::move(part));
    at = next + 2;
  }
}

const FormPart* find_part(const std::vector<FormPart>& parts, const std::string& name) {
  for (const FormPart& p : parts)
    if (p.name == name) return &p;
  return nullptr;
}

}  // namespace pconv::serve
