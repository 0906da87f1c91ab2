#include "apps/serving/base64.h"

#include <array>

#include "core/dtype.h"

namespace pconv {

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// 0..63 for alphabet characters, -1 for the rest.
constexpr std::array<int8_t, 256> decode_table() {
  std::array<int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(kAlphabet[i])] = int8_t(i);
  return t;
}
constexpr std::array<int8_t, 256> kDecode = decode_table();

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

std::string describe(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u >= 0x20 && u < 0x7f) return std::string("'") + c + "'";
  const char* hex = "0123456789abcdef";
  return std::string("byte 0x") + hex[u >> 4] + hex[u & 15];
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8 | uint8_t(bytes[i + 2]);
    for (int shift : {18, 12, 6, 0}) out += kAlphabet[(v >> shift) & 63];
  }
  const size_t rest = bytes.size() - i;
  if (rest) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
    if (rest == 2) v |= uint32_t(uint8_t(bytes[i + 1])) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string base64_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size() / 4 * 3);
  uint32_t bits = 0;
  int count = 0;    // sextets in `bits`
  size_t digits = 0, padding = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (is_space(c)) continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    const int v = kDecode[static_cast<unsigned char>(c)];
    if (v < 0 || padding)
      throw Error("not valid base64: " + describe(c) + " at offset " + std::to_string(i) +
                  (padding ? " after the '=' padding" : ""));
    bits = bits << 6 | uint32_t(v);
    ++digits;
    if (++count == 4) {
      out += char(bits >> 16 & 255);
      out += char(bits >> 8 & 255);
      out += char(bits & 255);
      bits = 0;
      count = 0;
    }
  }
  // 2 or 3 leftover digits carry 1 or 2 bytes; 1 carries none and is an error.
  if (count == 1) throw Error("not valid base64: the last group has 1 character");
  if (padding > 2 || (padding && (digits + padding) % 4 != 0))
    throw Error("not valid base64: " + std::to_string(padding) + " '=' do not complete the last group");
  if (count == 2) out += char(bits >> 4 & 255);
  if (count == 3) {
    out += char(bits >> 10 & 255);
    out += char(bits >> 2 & 255);
  }
  return out;
}

std::string_view strip_data_url(std::string_view text) {
  if (text.substr(0, 5) != "data:") return text;
  const size_t comma = text.find(',');
  if (comma == std::string_view::npos) throw Error("a data URL without a ',' before its data");
  const std::string_view head = text.substr(0, comma);
  if (head.size() < 7 || head.substr(head.size() - 7) != ";base64")
    throw Error("the data URL '" + std::string(head.substr(0, 60)) + "' is not base64 (no ';base64')");
  return text.substr(comma + 1);
}

}  // namespace pconv
