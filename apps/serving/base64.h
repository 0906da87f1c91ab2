#pragma once
// Base64 (RFC 4648, standard alphabet, '=' padding) for the server's JSON API, and the
// "data:image/png;base64," prefix browsers put in front of it.
#include <string>
#include <string_view>

namespace pconv {

std::string base64_encode(std::string_view bytes);
// Strict: the standard alphabet only, padding optional but, when present, correct; ASCII
// whitespace (line breaks) is skipped. Throws Error("<what>") naming the first bad character.
std::string base64_decode(std::string_view text);
// The base64 part of a data URL ("data:image/png;base64,AAAA" → "AAAA"); other text is
// returned as it is. Throws Error for a data URL that is not base64.
std::string_view strip_data_url(std::string_view text);

}  // namespace pconv
