#include "apps/common/serve_api.h"

#include "apps/common/base64.h"

#include <cmath>

namespace pconv::serve {

namespace {

using nlohmann::json;

[[noreturn]] void bad_request(const std::string& message) { throw ApiError(400, message); }

const std::string& string_field(const json& body, const char* name) {
  if (!body.contains(name)) bad_request(std::string("the request has no '") + name + "' field");
  const json& v = body[name];
  if (!v.is_string()) bad_request(std::string("'") + name + "' must be a base64 string, got " + v.type_name());
  return v.get_ref<const std::string&>();
}

ImageU8 decode_field(const json& body, const char* name, const Limits& limits) {
  const std::string& text = string_field(body, name);
  std::string bytes;
  try {
    bytes = base64_decode(strip_data_url(text));
  } catch (const Error& e) {
    bad_request(std::string("'") + name + "': " + e.what());
  }
  if (bytes.empty()) bad_request(std::string("'") + name + "' is empty");
  try {
    return decode_image_u8(bytes, name, limits.max_pixels, ImageAlpha::Keep);
  } catch (const Error& e) {
    const std::string message = e.what();
    // decode_image_u8 says "over the limit of N pixels" for images it refuses by size.
    if (message.find("over the limit") != std::string::npos) throw ApiError(413, message);
    bad_request(message);
  }
}

int64_t integer_option(const json& body, const char* name, int64_t fallback, int64_t min) {
  if (!body.contains(name) || body[name].is_null()) return fallback;
  const json& v = body[name];
  // IOPaint's clients send integers; a whole-valued float (800.0) is accepted too. The range
  // is checked before any conversion: casting 1e300 to an integer is undefined behaviour.
  if (v.is_number()) {
    const double d = v.get<double>();
    if (d >= double(min) && d <= 1e9 && d == std::floor(d)) return int64_t(d);
  }
  bad_request(std::string("'") + name + "' must be an integer >= " + std::to_string(min) + ", got " + v.dump());
}

}  // namespace

InpaintRequest parse_inpaint_request(const std::string& body_text, const Limits& limits,
                                     const inference::HdOptions& defaults) {
  const json body = json::parse(body_text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) bad_request("the request body is not JSON");
  if (!body.is_object()) bad_request(std::string("the request body must be a JSON object, got ") + body.type_name());

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

  r.image = decode_field(body, "image", limits);
  r.had_alpha = !r.image.alpha.empty();
  const ImageU8 mask_image = decode_field(body, "mask", limits);
  if (mask_image.width != r.image.width || mask_image.height != r.image.height)
    bad_request("the mask is " + std::to_string(mask_image.width) + "×" + std::to_string(mask_image.height) +
                ", the image " + std::to_string(r.image.width) + "×" + std::to_string(r.image.height) +
                " (they must be the same size)");
  r.mask = mask_from_image(mask_image, MaskHoles::White).mask;
  return r;
}

std::string error_json(const std::string& message) { return json{{"error", message}}.dump(); }

json model_json(const std::string& name, const PConvUNetConfig& config, const std::string& device) {
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
              {"device", device}};
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
                {"hd_strategy", inference::hd_strategy_name(s.hd.strategy)},
                {"hd_strategy_crop_margin", s.hd.crop_margin},
                {"hd_strategy_crop_trigger_size", s.hd.crop_trigger_size},
                {"hd_strategy_resize_limit", s.hd.resize_limit}}}};
}

}  // namespace pconv::serve
