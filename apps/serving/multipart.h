#pragma once
// multipart/form-data (RFC 7578) bodies: what `curl -F image=@photo.jpg`, browsers' FormData
// and IOPaint's save_image and gen-info uploads send.
#include <string>
#include <vector>

namespace pconv::serve {

struct FormPart {
  std::string name, filename, content_type, data;
};

// The boundary parameter of a "multipart/form-data; boundary=..." Content-Type, or "" when
// the type is not multipart/form-data or names none.
std::string multipart_boundary(const std::string& content_type);
// The parts in order. Throws Error (one line) for a body that does not follow the format: no
// first boundary, a part without headers' end or Content-Disposition, no closing boundary.
std::vector<FormPart> parse_multipart(const std::string& body, const std::string& boundary);
// The first part named `name`, or nullptr.
const FormPart* find_part(const std::vector<FormPart>& parts, const std::string& name);

}  // namespace pconv::serve
