#include "apps/serving/serve_api.h"

#include <charconv>
#include <cmath>
#include <random>

#include "apps/serving/base64.h"
#include "apps/serving/multipart.h"
#include "models/texture_transfer.h"

namespace pconv::serve {

namespace {

using nlohmann::json;

[[noreturn]] void bad_request(const std::string& message) { throw ApiError(400, message); }

// The bytes of a base64 field (with or without a data: prefix).
std::string field_bytes(const json& body, const char* name) {
  if (!body.contains(name)) bad_request(std::string("the request has no '") + name + "' field");
  const json& v = body[name];
  if (!v.is_string()) bad_request(std::string("'") + name + "' must be a base64 string, got " + v.type_name());
  try {
    return base64_decode(strip_data_url(v.get_ref<const std::string&>()));
  } catch (const Error& e) {
    bad_request(std::string("'") + name + "': " + e.what());
  }
}

// decode_image's and read_image_header's "over the limit" is a 413, anything else a 400.
[[noreturn]] void image_error(const Error& e) {
  const std::string message = e.what();
  if (message.find("over the limit") != std::string::npos) throw ApiError(413, message);
  bad_request(message);
}

ImageHeader header_of(const std::string& bytes, const char* name, const Limits& limits) {
  if (bytes.empty()) bad_request(std::string("'") + name + "' is empty");
  try {
    return read_image_header(bytes, name, limits.max_pixels);
  } catch (const Error& e) {
    image_error(e);
  }
}

DecodedImage decode_field(const std::string& bytes, const char* name, const Limits& limits, ImageAlpha alpha) {
  try {
    return decode_image(bytes, name, limits.max_pixels, alpha);
  } catch (const Error& e) {
    image_error(e);
  }
}

// An integer option: a JSON number, or a string holding one ("128", as form fields and some
// clients send them; IOPaint's pydantic model accepts both). A whole-valued float (800.0) is
// accepted too. The range is checked before any conversion: casting 1e300 to an integer is
// undefined behaviour.
int64_t integer_option(const json& body, const char* name, int64_t fallback, int64_t min, int64_t max = 1000000000) {
  if (!body.contains(name) || body[name].is_null()) return fallback;
  const json& v = body[name];
  double d = NAN;
  if (v.is_number()) {
    d = v.get<double>();
  } else if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    const char* end = s.data() + s.size();
    auto [ptr, ec] = std::from_chars(s.data(), end, d);
    if (ec != std::errc() || ptr != end || s.empty()) d = NAN;
  }
  if (d >= double(min) && d <= double(max) && d == std::floor(d)) return int64_t(d);
  bad_request(std::string("'") + name + "' must be an integer >= " + std::to_string(min) + ", got " + v.dump());
}

InpaintRequest parse_fields(const json& body, const std::string& image_bytes, const std::string& mask_bytes,
                            const Limits& limits, const inference::HdOptions& defaults, const Reserve& reserve) {
  InpaintRequest r;
  r.hd = defaults;
  if (body.contains("hd_strategy") && !body["hd_strategy"].is_null()) {
    if (!body["hd_strategy"].is_string()) bad_request("'hd_strategy' must be \"Crop\", \"Resize\" or \"Original\"");
    try {
      r.hd.strategy = inference::parse_hd_strategy(body["hd_strategy"].get<std::string>());
    } catch (const Error& e) {
      bad_request(std::string("'hd_strategy': ") + e.what());
    }
  }
  r.hd.crop_margin = integer_option(body, "hd_strategy_crop_margin", r.hd.crop_margin, 0);
  r.hd.crop_trigger_size = integer_option(body, "hd_strategy_crop_trigger_size", r.hd.crop_trigger_size, 1);
  r.hd.resize_limit = integer_option(body, "hd_strategy_resize_limit", r.hd.resize_limit, 1);
  if (body.contains("texture") && !body["texture"].is_null()) {
    if (!body["texture"].is_string() || !is_texture_name(body["texture"].get<std::string>()))
      bad_request("'texture' must be \"none\" or \"transfer\", got " + body["texture"].dump());
    r.texture = body["texture"].get<std::string>();
  }
  r.seed = integer_option(body, "sd_seed", 42, -1, int64_t(1) << 53);
  if (r.seed == -1) {  // IOPaint's "random": it draws one in 1..99999999 and answers it in X-Seed
    thread_local std::mt19937 draw{std::random_device{}()};
    r.seed = std::uniform_int_distribution<int64_t>(1, 99999999)(draw);
  }

  // Both headers first: nothing is decoded before the memory for it is granted.
  const ImageHeader image_header = header_of(image_bytes, "image", limits);
  const ImageHeader mask_header = header_of(mask_bytes, "mask", limits);
  if (reserve)
    reserve(kRequestBytesPerPixel * int64_t(image_header.width) * image_header.height +
            4 * int64_t(mask_header.width) * mask_header.height);
  DecodedImage image = decode_field(image_bytes, "image", limits, ImageAlpha::Keep);
  const DecodedImage mask = decode_field(mask_bytes, "mask", limits, ImageAlpha::Drop);
  if (mask.image.width != image.image.width || mask.image.height != image.image.height)
    bad_request("the mask is " + std::to_string(mask.image.width) + "×" + std::to_string(mask.image.height) +
                ", the image " + std::to_string(image.image.width) + "×" + std::to_string(image.image.height) +
                " (they must be the same size)");
  r.image = std::move(image.image);
  r.had_alpha = !r.image.alpha.empty();
  r.format = image.format == ImageFormat::Jpeg || image.format == ImageFormat::Webp ? image.format : ImageFormat::Png;
  r.lossless = image.lossless;
  r.icc = std::move(image.icc);
  r.exif = std::move(image.exif);
  r.mask = mask_from_grey(mask.image);
  return r;
}

}  // namespace

MaskImage mask_from_grey(const ImageU8& mask) {
  MaskImage m(mask.height, mask.width);
  const size_t n = size_t(mask.width) * size_t(mask.height);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = &mask.rgb[i * 3];
    // PIL's ITU-R 601-2 luma in fixed point, as Image.convert("L") computes it.
    const uint32_t grey = (uint32_t(p[0]) * 19595 + uint32_t(p[1]) * 38470 + uint32_t(p[2]) * 7471 + 0x8000) >> 16;
    m.known[i] = grey > 127 ? 0.0f : 1.0f;
  }
  return m;
}

InpaintRequest parse_inpaint_request(const std::string& body_text, const Limits& limits,
                                     const inference::HdOptions& defaults, const Reserve& reserve) {
  const json body = json::parse(body_text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) bad_request("the request body is not JSON");
  if (!body.is_object()) bad_request(std::string("the request body must be a JSON object, got ") + body.type_name());
  // The mask's field is checked before the image is decoded: a request missing it fails cheaply.
  const std::string image_bytes = field_bytes(body, "image");
  const std::string mask_bytes = field_bytes(body, "mask");
  return parse_fields(body, image_bytes, mask_bytes, limits, defaults, reserve);
}

InpaintRequest parse_inpaint_multipart(const std::string& body, const std::string& boundary, const Limits& limits,
                                       const inference::HdOptions& defaults, const Reserve& reserve) {
  std::vector<FormPart> parts;
  try {
    parts = parse_multipart(body, boundary);
  } catch (const Error& e) {
    bad_request(e.what());
  }
  json fields = json::object();
  std::string image_bytes, mask_bytes;
  for (const FormPart& p : parts) {
    // A file part's bytes are the image; a text part holds base64 (or a data URL) as in JSON.
    std::string* target = p.name == "image" ? &image_bytes : p.name == "mask" ? &mask_bytes : nullptr;
    if (target && !p.filename.empty()) {
      *target = p.data;
    } else if (target) {
      fields[p.name] = p.data;
      *target = field_bytes(fields, p.name.c_str());
    } else if (!p.name.empty()) {
      fields[p.name] = p.data;
    }
  }
  if (!find_part(parts, "image")) bad_request("the request has no 'image' field");
  if (!find_part(parts, "mask")) bad_request("the request has no 'mask' field");
  return parse_fields(fields, image_bytes, mask_bytes, limits, defaults, reserve);
}

EncodedAnswer encode_answer(const InpaintRequest& r, const ImageU8& composite, int quality) {
  EncodedAnswer a;
  a.bytes = encode_image(composite, r.format, quality, r.lossless, r.icc, r.exif);
  a.content_type = std::string("image/") + image_format_name(r.format);
  return a;
}

std::string error_json(const std::string& message, const std::string& kind) {
  return json{{"error", kind}, {"detail", message}, {"body", ""}, {"errors", message}}.dump();
}

json model_json(const std::string& name, const PConvUNetConfig& config, const std::string& device,
                const std::string& texture) {
  return json{{"name", name},
              {"path", name},
              {"model_type", "inpaint"},
              {"need_prompt", false},
              {"controlnets", json::array()},
              {"brushnets", json::array()},
              {"support_strength", false},
              {"support_outpainting", false},
              {"support_controlnet", false},
              {"support_brushnet", false},
              {"support_powerpaint_v2", false},
              {"support_lcm_lora", false},
              {"is_single_file_diffusers", false},
              {"architecture", config.describe()},
              {"config", json::parse(config.to_json())},
              {"device", device},
              {"texture", texture}};
}

json server_config_json(const json& model, const ServerSettings& s, size_t waiting) {
  return json{{"plugins", json::array()},
              {"modelInfos", json::array({model})},
              {"removeBGModel", ""},
              {"removeBGModels", json::array()},
              {"realesrganModel", ""},
              {"realesrganModels", json::array()},
              {"interactiveSegModel", ""},
              {"interactiveSegModels", json::array()},
              {"enableFileManager", false},
              {"enableAutoSaving", false},
              {"enableControlnet", false},
              {"controlnetMethod", nullptr},
              {"disableModelSwitch", true},
              {"isDesktop", false},
              {"samplers", json::array()},
              {"pconv",
               {{"max_body_bytes", s.limits.max_body_bytes},
                {"max_pixels", s.limits.max_pixels},
                {"queue", s.queue},
                {"waiting", waiting},
                {"timeout_s", s.timeout_s},
                {"quality", s.quality},
                {"memory_budget_bytes", s.memory_budget_bytes},
                {"hd_strategy", inference::hd_strategy_name(s.hd.strategy)},
                {"hd_strategy_crop_margin", s.hd.crop_margin},
                {"hd_strategy_crop_trigger_size", s.hd.crop_trigger_size},
                {"hd_strategy_resize_limit", s.hd.resize_limit}}}};
}

}  // namespace pconv::serve
