#include "apps/serving/iopaint_routes.h"

#include <sys/stat.h>

#include <filesystem>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <string_view>

#include "apps/serving/base64.h"
#include "apps/serving/multipart.h"
#include "apps/serving/serve_access.h"
#include "core/io/safetensors.h"  // write_file_atomic

namespace pconv::serve {

namespace {

using nlohmann::json;

http::Response bytes_answer(std::string bytes, const std::string& type) {
  http::Response r;
  r.content_type = type;
  r.body = std::move(bytes);
  return r;
}

// OpenCV's MORPH_ELLIPSE structuring element of (2k+1)²: for each row dy, the half-width.
std::vector<int> ellipse_half_widths(int k) {
  std::vector<int> half(size_t(2 * k + 1), 0);
  const double inv_r2 = k ? 1.0 / (double(k) * k) : 0;
  for (int i = 0; i <= 2 * k; ++i) {
    const int dy = i - k;
    half[size_t(i)] = int(std::lround(k * std::sqrt(double(k * k - dy * dy) * inv_r2)));
  }
  return half;
}

// Dilates (or, with `erode`, erodes) a 0/1 image by the ellipse; pixels outside the image
// count for neither (OpenCV's default border for both).
std::vector<uint8_t> morph(const std::vector<uint8_t>& in, int w, int h, int k, bool erode) {
  const std::vector<int> half = ellipse_half_widths(k);
  // Per row, prefix counts of set pixels (or of unset ones, for erosion).
  std::vector<int> prefix(size_t(w + 1) * size_t(h));
  for (int y = 0; y < h; ++y) {
    int* p = &prefix[size_t(y) * size_t(w + 1)];
    p[0] = 0;
    for (int x = 0; x < w; ++x) p[x + 1] = p[x] + ((in[size_t(y) * w + x] != 0) != erode);
  }
  std::vector<uint8_t> out(in.size());
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      bool hit = false;
      for (int dy = -k; dy <= k && !hit; ++dy) {
        const int yy = y + dy;
        if (yy < 0 || yy >= h) continue;
        const int hw = half[size_t(dy + k)];
        const int x0 = std::max(x - hw, 0), x1 = std::min(x + hw + 1, w);
        const int* p = &prefix[size_t(yy) * size_t(w + 1)];
        hit = p[x1] - p[x0] > 0;
      }
      out[size_t(y) * w + x] = uint8_t(hit != erode);
    }
  return out;
}

int64_t integer_field(const json& body, const char* name, int64_t fallback, int64_t min, int64_t max) {
  if (!body.contains(name) || body[name].is_null()) return fallback;
  const json& v = body[name];
  double d = NAN;
  if (v.is_number()) d = v.get<double>();
  if (v.is_string()) {
    try {
      size_t used = 0;
      d = std::stod(v.get<std::string>(), &used);
      if (used != v.get<std::string>().size()) d = NAN;
    } catch (const std::exception&) {
    }
  }
  if (!(d >= double(min) && d <= double(max) && d == std::floor(d)))
    throw ApiError(400, std::string("'") + name + "' must be an integer from " + std::to_string(min) + " to " +
                            std::to_string(max) + ", got " + v.dump());
  return int64_t(d);
}

// %XX and '+' decoded (form encoding, as browsers send query strings).
std::string url_decode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += char(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}


bool is_directory(const std::string& path) {
  struct stat st {};
  return !path.empty() && ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The folder of a file-manager tab ("" for the mask tab: pconv keeps no mask folder).
std::string tab_dir(const IopaintSettings& s, const std::string& tab) {
  if (tab == "input") return is_directory(s.input) ? s.input : "";
  if (tab == "output") return s.output_dir;
  if (tab == "mask") return "";
  throw ApiError(422, "tab not found: " + tab);
}

bool is_image_name(const std::filesystem::path& p) {
  std::string ext = p.extension().string();
  for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".webp" || ext == ".gif" || ext == ".bmp" ||
         ext == ".tga";
}

std::string read_prefix(const std::string& path, size_t most) {
  std::ifstream f(path, std::ios::binary);
  std::string bytes(most, '\0');
  f.read(bytes.data(), std::streamsize(most));
  bytes.resize(size_t(f.gcount()));
  return bytes;
}

// A web app's file types (what Vite's build and IOPaint's web_app/dist hold, and a few more).
std::string web_content_type(const std::filesystem::path& file) {
  std::string ext = file.extension().string();
  for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
  static const std::pair<const char*, const char*> kTypes[] = {
      {".html", "text/html; charset=utf-8"},  {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},        {".map", "application/json"},
      {".webmanifest", "application/manifest+json"}, {".txt", "text/plain; charset=utf-8"},
      {".svg", "image/svg+xml"},            {".png", "image/png"},
      {".jpg", "image/jpeg"},               {".jpeg", "image/jpeg"},
      {".webp", "image/webp"},              {".gif", "image/gif"},
      {".ico", "image/x-icon"},             {".woff", "font/woff"},
      {".woff2", "font/woff2"},             {".ttf", "font/ttf"},
      {".wasm", "application/wasm"}};
  for (const auto& [e, type] : kTypes)
    if (ext == e) return type;
  return "application/octet-stream";
}

}  // namespace

std::string query_param(const std::string& query, const std::string& name) {
  size_t at = 0;
  while (at <= query.size()) {
    const size_t end = std::min(query.find('&', at), query.size());
    const std::string pair = query.substr(at, end - at);
    if (pair.rfind(name + "=", 0) == 0) return url_decode(pair.substr(name.size() + 1));
    at = end + 1;
  }
  return "";
}

http::Response adjust_mask_answer(const std::string& body_text, const Limits& limits) {
  const json body = json::parse(body_text, nullptr, false);
  if (!body.is_object() || !body.contains("mask") || !body["mask"].is_string())
    throw ApiError(400, "adjust_mask takes {\"mask\": base64, \"operate\": \"expand\"|\"shrink\"|\"reverse\", "
                        "\"kernel_size\": n}");
  const std::string operate = body.value("operate", "");
  if (operate != "expand" && operate != "shrink" && operate != "reverse")
    throw ApiError(400, "'operate' must be \"expand\", \"shrink\" or \"reverse\"");
  const int k = int(integer_field(body, "kernel_size", 5, 0, 100));
  ImageU8 mask;
  try {
    mask = decode_image_u8(base64_decode(strip_data_url(body["mask"].get<std::string>())), "mask", limits.max_pixels);
  } catch (const Error& e) {
    throw ApiError(std::string(e.what()).find("over the limit") != std::string::npos ? 413 : 400, e.what());
  }
  const int w = mask.width, h = mask.height;
  std::vector<uint8_t> hole(size_t(w) * h);
  for (size_t i = 0; i < hole.size(); ++i) {
    const uint8_t* p = &mask.rgb[i * 3];
    const uint32_t grey = (uint32_t(p[0]) * 19595 + uint32_t(p[1]) * 38470 + uint32_t(p[2]) * 7471 + 0x8000) >> 16;
    hole[i] = grey >= 127;  // IOPaint's adjust_mask: >= 127 is 255
  }
  if (operate == "reverse")
    for (uint8_t& v : hole) v = !v;
  else
    hole = morph(hole, w, h, k, operate == "shrink");
  // IOPaint's answer: the web app's brush colour where the mask is, transparent elsewhere.
  ImageU8 out;
  out.width = w, out.height = h, out.channels_in_file = 4;
  out.rgb.resize(hole.size() * 3);
  out.alpha.resize(hole.size());
  for (size_t i = 0; i < hole.size(); ++i)
    if (hole[i]) {
      out.rgb[i * 3] = 255, out.rgb[i * 3 + 1] = 203, out.rgb[i * 3 + 2] = 0;
      out.alpha[i] = 186;
    }
  return bytes_answer(encode_png(out), "image/png");
}

json samplers_json() {
  return json::array({"DPM++ 2M", "DPM++ 2M Karras", "DPM++ 2M SDE", "DPM++ 2M SDE Karras", "DPM++ SDE",
                      "DPM++ SDE Karras", "DPM2", "DPM2 Karras", "DPM2 a", "DPM2 a Karras", "Euler", "Euler a", "Heun",
                      "LMS", "LMS Karras"});
}

namespace {

// The multipart part named "file" of a route's body; a 400 naming the route when the body is
// not multipart or has no such part.
FormPart multipart_file(const std::string& content_type, const std::string& body, const char* route) {
  std::vector<FormPart> parts;
  try {
    parts = parse_multipart(body, multipart_boundary(content_type));
  } catch (const Error& e) {
    throw ApiError(400, e.what());
  }
  const FormPart* file = find_part(parts, "file");
  if (!file) throw ApiError(400, std::string(route) + " takes a multipart 'file'");
  return std::move(parts[size_t(file - parts.data())]);
}

}  // namespace

http::Response gen_info_answer(const std::string& content_type, const std::string& body) {
  const FormPart file = multipart_file(content_type, body, "gen-info");
  // A PNG's tEXt "parameters" (what Stable Diffusion front ends write).
  std::string parameters;
  const std::string& png = file.data;
  for (size_t at = 8; png.compare(0, 4, "\x89PNG") == 0 && at + 12 <= png.size();) {
    const size_t length = (size_t(uint8_t(png[at])) << 24) | (size_t(uint8_t(png[at + 1])) << 16) |
                          (size_t(uint8_t(png[at + 2])) << 8) | size_t(uint8_t(png[at + 3]));
    if (length > png.size() - at - 12) break;
    if (png.compare(at + 4, 4, "tEXt") == 0 && png.compare(at + 8, 11, std::string("parameters\0", 11)) == 0)
      parameters = png.substr(at + 19, length - 11);
    at += 12 + length;
  }
  const size_t split = parameters.find("Negative prompt: ");
  std::string prompt = parameters.substr(0, split), negative;
  if (split != std::string::npos) {
    negative = parameters.substr(split + 17);
    negative = negative.substr(0, negative.find('\n'));
  }
  while (!prompt.empty() && std::isspace(static_cast<unsigned char>(prompt.back()))) prompt.pop_back();
  http::Response r;
  r.body = json{{"prompt", prompt}, {"negative_prompt", negative}}.dump();
  return r;
}

http::Response input_image_answer(const std::string& input, const Limits& limits) {
  if (input.empty()) {
    http::Response r = error_response(200, "No input image configured");  // IOPaint answers 200 so
    return r;                                                              // its web app starts empty
  }
  struct stat st {};
  if (::stat(input.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) throw ApiError(404, "Input image not found");
  if (int64_t(st.st_size) > limits.max_body_bytes) throw ApiError(413, "the input image is over the size limit");
  std::ifstream f(input, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (!f.good() && !f.eof()) throw ApiError(500, "cannot read the input image");
  const ImageFormat format = sniff_image_format(bytes);
  http::Response r = bytes_answer(std::move(bytes), std::string("image/") + image_format_name(format));
  // IOPaint's web app names the photo it opens from this header's `filename=` up to a ';', quotes
  // and all, and saves the result under that name: so the name goes unquoted when it is an HTTP
  // token, and is left out otherwise (the app then says "inputImage", as with IOPaint's answer,
  // which has no such header).
  const std::string name = std::filesystem::path(input).filename().string();
  const bool token = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$&+-.^_`|~").find(c) != std::string_view::npos;
  });
  if (token) r.headers.emplace_back("Content-Disposition", "inline; filename=" + name);
  return r;
}

http::Response save_image_answer(const std::string& output_dir, const std::string& content_type,
                                 const std::string& body) {
  struct stat st {};
  if (output_dir.empty() || ::stat(output_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw ApiError(400, "Output directory not configured or doesn't exist");
  const FormPart file = multipart_file(content_type, body, "save_image");
  // The name's last component only (IOPaint: Path(filename).name): no way out of the folder.
  std::string name = file.filename;
  const size_t slash = name.find_last_of("/\\");
  if (slash != std::string::npos) name = name.substr(slash + 1);
  if (name.empty() || name == "." || name == ".." || name.find('\0') != std::string::npos)
    throw ApiError(400, "save_image: the file needs a name");
  try {
    write_file_atomic(output_dir + "/" + name, file.data);
  } catch (const Error& e) {
    throw ApiError(500, std::string("save_image: ") + e.what());
  }
  http::Response r;
  r.body = "null";
  return r;
}

http::Response medias_answer(const IopaintSettings& settings, const std::string& query) {
  const std::string dir = tab_dir(settings, query_param(query, "tab"));
  json list = json::array();
  if (dir.empty()) return bytes_answer(list.dump(), "application/json");
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file() && is_image_name(e.path())) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    ImageHeader header;
    try {
      // The header from the file's start (EXIF and ICC blocks come before a JPEG's size).
      header = read_image_header(read_prefix(f.string(), size_t(1) << 20), f.filename().string());
    } catch (const Error&) {
      continue;  // not an image after all
    }
    struct stat st {};
    ::stat(f.c_str(), &st);
    list.push_back({{"name", f.filename().string()},
                    {"width", header.width},
                    {"height", header.height},
                    {"ctime", double(st.st_ctim.tv_sec) + st.st_ctim.tv_nsec * 1e-9},
                    {"mtime", double(st.st_mtim.tv_sec) + st.st_mtim.tv_nsec * 1e-9}});
  }
  return bytes_answer(list.dump(), "application/json");
}

http::Response web_app_answer(const std::string& root, const std::string& path) {
  namespace fs = std::filesystem;
  const auto not_found = [&] { return ApiError(404, "no such file in the web app: " + path); };
  // %XX decoded ('+' is a plus in a path); no NUL, backslash, "." or ".." segment.
  std::string decoded;
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '%' && i + 2 < path.size() && std::isxdigit(static_cast<unsigned char>(path[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(path[i + 2]))) {
      decoded += char(std::stoi(path.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      decoded += path[i];
    }
  }
  if (decoded.empty() || decoded[0] != '/' || decoded.find_first_of(std::string("\\\0", 2)) != std::string::npos)
    throw not_found();
  if (decoded.back() == '/') decoded += "index.html";
  fs::path relative;
  size_t at = 1;
  while (at <= decoded.size()) {
    const size_t end = std::min(decoded.find('/', at), decoded.size());
    const std::string segment = decoded.substr(at, end - at);
    if (segment.empty() || segment == "." || segment == "..") throw not_found();
    relative /= segment;
    at = end + 1;
  }
  std::error_code ec;
  const fs::path base = fs::canonical(root, ec);
  if (ec) throw not_found();
  const fs::path file = fs::canonical(base / relative, ec);
  if (ec || !fs::is_regular_file(file, ec)) throw not_found();
  // Inside the folder once symlinks are resolved.
  if (std::mismatch(base.begin(), base.end(), file.begin(), file.end()).first != base.end()) throw not_found();
  const uintmax_t size = fs::file_size(file, ec);
  if (ec || size > (uintmax_t(64) << 20)) throw not_found();
  http::Response r = bytes_answer(read_prefix(file.string(), size_t(size)), web_content_type(file));
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  return r;
}

http::Response media_file_answer(const IopaintSettings& settings, const std::string& query, const Limits& limits) {
  const std::string tab = query_param(query, "tab"), name = query_param(query, "filename");
  const std::string dir = tab_dir(settings, tab);
  if (dir.empty() || name.empty() || name == "." || name == ".." || name.find_first_of("/\\") != std::string::npos ||
      name.find('\0') != std::string::npos)
    throw ApiError(422, "file not found: " + name);
  return input_image_answer(dir + "/" + name, limits);
}

}  // namespace pconv::serve
